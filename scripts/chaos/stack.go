package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// runner is one run: the private servers, the stack on them, the load and
// what each fault did.
type runner struct {
	cfg *config
	td  testenv.Teardown

	rabbit *testenv.RabbitNode
	vhost  string
	redis  *testenv.RedisServer
	pg     *testenv.PostgresCluster
	st     *testenv.Stack
	db     *pgxpool.Pool
	lc     partnerload.Config
	ld     *partnerload.Load

	faults  []*faultRun
	poison  *poisonRun
	sum     *partnerload.Summary
	checked int            // effects checked
	replays int            // keyed calls answered from the ledger after Redis lost their record
	byPhase map[string]int // of them, by phase
}

// servers starts the private RabbitMQ node, Redis server and PostgreSQL
// cluster.
func (r *runner) servers(ctx context.Context) error {
	t0 := time.Now()
	var err error
	if r.pg, err = testenv.StartPostgresCluster(ctx); err != nil {
		return err
	}
	r.td.Add("stop the PostgreSQL cluster", r.pg.Stop)
	if r.redis, err = testenv.StartRedisServer(ctx); err != nil {
		return err
	}
	r.td.Add("stop the Redis server", r.redis.Stop)
	if r.rabbit, err = testenv.StartRabbitNode(ctx, fmt.Sprintf("heartbeat = %d", heartbeat)); err != nil {
		return err
	}
	r.td.Add("stop the RabbitMQ node", r.rabbit.Stop)
	r.vhost = "oneoffice"
	amqpURL, err := r.rabbit.Vhost(ctx, r.vhost)
	if err != nil {
		return err
	}
	logf("private servers up in %s: PostgreSQL on port %d, Redis on %s, RabbitMQ %s on port %d",
		time.Since(t0).Round(time.Millisecond), r.pg.Port, r.redis.Addr, r.rabbit.Name, r.rabbit.Port)
	return r.stack(ctx, amqpURL)
}

// stack brings up one gateway and three workers on the private servers,
// with a second partner.
func (r *runner) stack(ctx context.Context, amqpURL string) error {
	srv := testenv.Servers{PostgresURL: r.pg.URL, RedisAddr: r.redis.Addr, Wait: testenv.DefaultWait,
		Logf: func(format string, args ...any) { logf(format, args...) }}
	st, err := srv.UpStack(ctx, testenv.StackConfig{
		Name: "chaos", Partner: "Chaos " + r.cfg.tag + " 1", Workers: 3, AMQPURL: amqpURL,
		Env: []string{
			"RPC_TIMEOUT=" + r.cfg.rpcTimeout.String(),
			// A monthly order can be renewed twice, as the flows do.
			"RENEWAL_WINDOW_DAYS=400",
			"WORKER_CONCURRENCY=16",
			"WORKER_PREFETCH=32",
			"DATABASE_MAX_CONNS=8",
			"LOG_LEVEL=info",
		},
		LogFiles: true, Keep: r.cfg.keep,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return err
	}
	r.st = st
	r.td.Add("close the stack", func(ctx context.Context) error { return st.Close(2 * time.Minute) })
	second, err := st.Admin(ctx, "keys", "create", "--partner", "Chaos "+r.cfg.tag+" 2")
	if err != nil {
		return fmt.Errorf("keys create: %w", err)
	}
	if r.db, err = pgxpool.New(ctx, st.DatabaseURL); err != nil {
		return err
	}
	r.td.Add("close the database pool", func(context.Context) error { r.db.Close(); return nil })
	r.lc = partnerload.Config{Tag: r.cfg.tag, Gateways: []string{st.HTTPAddr}, Rate: r.cfg.rate,
		Flows: r.cfg.flows, RPCTimeout: r.cfg.rpcTimeout}
	for i, key := range []string{st.Key, second} {
		p := partnerload.Partner{Key: key}
		name := fmt.Sprintf("Chaos %s %d", r.cfg.tag, i+1)
		if err := r.db.QueryRow(ctx, `SELECT id FROM partners WHERE name = $1`, name).Scan(&p.ID); err != nil {
			return fmt.Errorf("partner %s: %w", name, err)
		}
		r.lc.Partners = append(r.lc.Partners, p)
	}
	_, workers := st.Pids()
	logf("stack up: gateway on %s, worker pids %v, work directory %s", st.HTTPAddr, workers, st.Dir)
	return nil
}
