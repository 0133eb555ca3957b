package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// teardown undoes what the run made, last first, whatever happened: the
// harness's undo stack.
type teardown = testenv.Teardown

// partner is one partner of the stack and its API key.
type partner struct {
	name string
	key  string
	id   int64
}

// stack is the provisioner on the cluster: two gateways, three workers.
type stack struct {
	dbURL    string
	redisURL string
	db       *pgxpool.Pool
	partners []*partner
	gateways []*proc
	workers  []*proc
}

// proc is one gateway or worker process.
type proc struct {
	name    string
	api     string // HTTP_ADDR (gateways)
	metrics string // METRICS_ADDR
	cmd     *exec.Cmd
	done    chan struct{}
}

// loadConfig is the partner load of cfg through both gateways.
func (st *stack) loadConfig(cfg *config) partnerload.Config {
	lc := partnerload.Config{Tag: cfg.tag, Rate: cfg.rate, Flows: cfg.flows, RPCTimeout: cfg.rpcTimeout}
	for _, gw := range st.gateways {
		lc.Gateways = append(lc.Gateways, gw.api)
	}
	for _, p := range st.partners {
		lc.Partners = append(lc.Partners, partnerload.Partner{Key: p.key, ID: p.id})
	}
	return lc
}

func startStack(ctx context.Context, cfg *config, cl *cluster, td *teardown) (*stack, error) {
	st := &stack{}
	var err error
	if st.dbURL, err = createDatabase(ctx, cfg, td); err != nil {
		return nil, err
	}
	// The Redis DB is claimed the way the tests, the bench and the load
	// scripts claim theirs, so none of them shares it with this run.
	srv := testenv.Servers{RedisAddr: cfg.redisAddr, Wait: testenv.DefaultWait}
	r, err := srv.ClaimRedis(ctx, "clustertest "+cfg.tag, 0)
	if err != nil {
		return nil, err
	}
	td.Add(fmt.Sprintf("release Redis DB %d", r.DB), r.Release)
	st.redisURL = r.URL
	env := []string{
		"DATABASE_URL=" + st.dbURL,
		"REDIS_URL=" + st.redisURL,
		"AMQP_URL=" + cl.urls(),
		"RPC_TIMEOUT=" + cfg.rpcTimeout.String(),
		// A monthly order can be renewed twice, as the flows do.
		"RENEWAL_WINDOW_DAYS=400",
		// Every worker writes tenant directories under the same root, as they
		// would on a shared volume.
		"STORAGE_ROOT=" + filepath.Join(cfg.work, "tenants"),
		"WORKER_CONCURRENCY=16",
		"WORKER_PREFETCH=32",
		"DATABASE_MAX_CONNS=6",
		"LOG_LEVEL=info",
	}
	if out, err := runBin(ctx, cfg, env, "gateway", "migrate"); err != nil {
		return nil, fmt.Errorf("migrate: %w: %s", err, out)
	}
	for i := range 2 {
		p := &partner{name: fmt.Sprintf("Cluster %s %d", cfg.tag, i+1)}
		out, err := runBin(ctx, cfg, env, "gateway", "keys", "create", "--partner", p.name)
		if err != nil {
			return nil, fmt.Errorf("keys create: %w: %s", err, out)
		}
		p.key = strings.TrimSpace(out)
		st.partners = append(st.partners, p)
	}
	if st.db, err = pgxpool.New(ctx, st.dbURL); err != nil {
		return nil, err
	}
	td.Add("close the database pool", func(context.Context) error { st.db.Close(); return nil })
	for _, p := range st.partners {
		if err := st.db.QueryRow(ctx, `SELECT id FROM partners WHERE name = $1`, p.name).Scan(&p.id); err != nil {
			return nil, fmt.Errorf("partner %s: %w", p.name, err)
		}
	}
	td.Add("stop the gateways and workers", st.stop)
	for i := range 3 {
		p, err := startReady(ctx, cfg, env, "worker", fmt.Sprintf("worker%d", i+1))
		if p != nil {
			st.workers = append(st.workers, p)
		}
		if err != nil {
			return nil, err
		}
	}
	for i := range 2 {
		p, err := startReady(ctx, cfg, env, "gateway", fmt.Sprintf("gateway%d", i+1))
		if p != nil {
			st.gateways = append(st.gateways, p)
		}
		if err != nil {
			return nil, err
		}
	}
	logf("stack up: 2 gateways, 3 workers, database %s, Redis DB %d", cfg.tag, r.DB)
	return st, nil
}

func createDatabase(ctx context.Context, cfg *config, td *teardown) (string, error) {
	conn, err := pgx.Connect(ctx, cfg.postgres)
	if err != nil {
		return "", fmt.Errorf("PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+cfg.tag); err != nil {
		return "", fmt.Errorf("create database %s: %w", cfg.tag, err)
	}
	td.Add("drop database "+cfg.tag, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, cfg.postgres)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+cfg.tag+" WITH (FORCE)")
		return err
	})
	cc, err := pgx.ParseConfig(cfg.postgres)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", cc.User, net.JoinHostPort(cc.Host, fmt.Sprint(cc.Port)), cfg.tag), nil
}

func runBin(ctx context.Context, cfg *config, env []string, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.bin, bin), args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return stderr.String(), err
	}
	return string(out), nil
}

// startReady starts a process and waits for its /readyz. A port picked free
// can be taken by someone else before the process binds it: then it is
// started again on new ports.
func startReady(ctx context.Context, cfg *config, env []string, bin, name string) (*proc, error) {
	for attempt := 1; ; attempt++ {
		p, err := startProc(ctx, cfg, env, bin, name)
		if err != nil {
			return nil, err
		}
		err = p.waitReady(ctx, time.Minute)
		if err == nil {
			return p, nil
		}
		log, _ := os.ReadFile(filepath.Join(cfg.work, name+".log"))
		if attempt == 3 || !p.exited() || !strings.Contains(string(log), "address already in use") {
			return p, err
		}
		logf("%s: a port it was given was taken meanwhile; starting it again", name)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func startProc(ctx context.Context, cfg *config, env []string, bin, name string) (*proc, error) {
	addrs, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, api: fmt.Sprintf("127.0.0.1:%d", addrs[0]), metrics: fmt.Sprintf("127.0.0.1:%d", addrs[1]),
		done: make(chan struct{})}
	log, err := os.Create(filepath.Join(cfg.work, name+".log"))
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(filepath.Join(cfg.bin, bin))
	p.cmd.Env = append(append(os.Environ(), env...), "HTTP_ADDR="+p.api, "METRICS_ADDR="+p.metrics)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	// Its own process group, and killed with this program if it dies.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls /readyz until it answers 200.
func (p *proc) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		if ready(client, p.metrics) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited at start: %v", p.name, p.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s", p.name, limit)
		}
	}
}

func ready(client *http.Client, metrics string) bool {
	resp, err := client.Get("http://" + metrics + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stop sends SIGTERM to every process, waits for them to drain, then kills
// what is left.
func (st *stack) stop(ctx context.Context) error {
	all := append(append([]*proc{}, st.gateways...), st.workers...)
	for _, p := range all {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var errs []error
	for _, p := range all {
		select {
		case <-p.done:
			if !p.cmd.ProcessState.Success() {
				errs = append(errs, fmt.Errorf("%s exited with %v", p.name, p.cmd.ProcessState))
			}
		case <-time.After(30 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
			errs = append(errs, fmt.Errorf("%s did not stop within 30s of SIGTERM; killed", p.name))
		case <-ctx.Done():
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	return errors.Join(errs...)
}

// freePorts returns n loopback ports that are free right now.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
