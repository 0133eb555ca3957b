package chaos

import (
	"context"
	"fmt"
	"time"

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
	st     *partnerload.Stack
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
// with two partners.
func (r *runner) stack(ctx context.Context, amqpURL string) error {
	srv := testenv.Servers{PostgresURL: r.pg.URL, RedisAddr: r.redis.Addr, Wait: testenv.DefaultWait, Logf: logf}
	st, err := partnerload.UpStack(ctx, srv, testenv.StackConfig{Name: "chaos", Workers: 3, AMQPURL: amqpURL},
		r.cfg.Flags, 8, &r.td)
	if err != nil {
		return err
	}
	r.st = st
	_, workers := st.Pids()
	logf("stack up: gateway on %s, worker pids %v, work directory %s", st.HTTPAddr, workers, st.Dir)
	return nil
}
