package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// Time limits of the stack.
const (
	adminTimeout = 2 * time.Minute // one gateway admin subcommand
	// teardownLimit bounds close: the processes drain for up to
	// testenv.DefaultStopTimeout each, then the rest is removed.
	teardownLimit = 3 * time.Minute
)

// stack is one isolated deployment on the shared servers, made with the
// harness of the e2e tests (shared/testenv): its own database, vhost and
// claimed Redis DB, binaries built from this tree, one gateway and
// cfg.workers workers on free loopback ports.
type stack struct {
	cfg  config
	srv  testenv.Servers
	name string // of the database and the vhost
	dir  string // binaries, process logs, tenant storage
	root string // STORAGE_ROOT of the workers
	bins testenv.Binaries

	dbURL, amqpURL, redisURL, httpAddr string
	key                                string

	gateway *testenv.Proc
	workers []*testenv.Proc

	undo testenv.Teardown
}

func newStack(cfg config) *stack {
	srv := cfg.servers
	srv.Logf = progress
	return &stack{cfg: cfg, srv: srv, name: testenv.Name("bench")}
}

// up creates everything and starts the processes; whatever it created is
// removed by close, also when up fails half way.
func (s *stack) up(ctx context.Context) error {
	steps := []struct {
		what string
		do   func(context.Context) error
	}{
		{"work directory", s.makeDir},
		{"database", s.createDatabase},
		{"vhost", s.createVhost},
		{"redis", s.claimRedis},
		{"build", s.build},
		{"migrate", s.migrate},
		{"key", s.createKey},
		{"processes", s.startProcesses},
	}
	for _, st := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		progress("stack: %s", st.what)
		if err := st.do(ctx); err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
		}
	}
	return nil
}

// close stops the processes and removes the Redis data, the vhost, the
// database and the work directory, in reverse order of their making, within
// teardownLimit.
func (s *stack) close() error { return s.undo.Run(teardownLimit) }

func (s *stack) makeDir(context.Context) error {
	dir, err := os.MkdirTemp("", "oneoffice-bench-")
	if err != nil {
		return err
	}
	s.dir = dir
	s.undo.Add("remove "+dir, func(context.Context) error {
		if s.cfg.keep {
			fmt.Fprintf(os.Stderr, "bench: kept %s\n", dir)
			return nil
		}
		return os.RemoveAll(dir)
	})
	s.root = filepath.Join(dir, "tenants")
	if s.cfg.storage != "" {
		root, err := os.MkdirTemp(s.cfg.storage, "oneoffice-bench-tenants-")
		if err != nil {
			return err
		}
		s.root = root
		s.undo.Add("remove "+root, func(context.Context) error { return os.RemoveAll(root) })
	}
	return os.MkdirAll(s.root, 0o750)
}

func (s *stack) createDatabase(ctx context.Context) error {
	dbURL, drop, err := s.srv.CreateDatabase(ctx, s.name)
	if err != nil {
		return err
	}
	s.undo.Add("drop database "+s.name, drop)
	s.dbURL = dbURL
	return nil
}

func (s *stack) createVhost(ctx context.Context) error {
	amqpURL, del, err := s.srv.CreateVhost(ctx, s.name)
	if err != nil {
		return err
	}
	s.undo.Add("delete vhost "+s.name, del)
	s.amqpURL = amqpURL
	return nil
}

// claimRedis claims -redis-db, or the first free DB, as the tests do.
func (s *stack) claimRedis(ctx context.Context) error {
	r, err := s.srv.ClaimRedis(ctx, "bench "+s.name, s.cfg.redisDB)
	if err != nil {
		return err
	}
	s.undo.Add(fmt.Sprintf("release Redis DB %d", r.DB), r.Release)
	s.redisURL = r.URL
	progress("stack: Redis DB %d", r.DB)
	return nil
}

// build compiles the gateway and the worker of this tree into the work directory.
func (s *stack) build(ctx context.Context) (err error) {
	s.bins, err = testenv.Build(ctx, s.dir)
	return err
}

// env is what every process of the stack gets on top of the bench's own.
func (s *stack) env() []string {
	env := []string{
		"DATABASE_URL=" + s.dbURL,
		"AMQP_URL=" + s.amqpURL,
		"REDIS_URL=" + s.redisURL,
		"HTTP_ADDR=" + s.httpAddr,
		"STORAGE_ROOT=" + s.root,
		"WORKER_CONCURRENCY=" + strconv.Itoa(s.cfg.concurrency),
		"WORKER_PREFETCH=" + strconv.Itoa(s.cfg.prefetch),
		"RATE_LIMIT_RPS=0",
		// The per-request log line is part of the real cost: keep it.
		"LOG_LEVEL=info",
	}
	if s.cfg.gomaxprocs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(s.cfg.gomaxprocs))
	}
	return env
}

func (s *stack) migrate(ctx context.Context) error {
	_, err := s.admin(ctx, "migrate")
	return err
}

func (s *stack) createKey(ctx context.Context) error {
	key, err := s.admin(ctx, "keys", "create", "--partner", "bench")
	if err != nil {
		return err
	}
	if key == "" || strings.ContainsAny(key, " \n") {
		return fmt.Errorf("keys create printed %q, want only a key", key)
	}
	s.key = key
	return nil
}

// admin runs a gateway admin subcommand and returns its stdout.
func (s *stack) admin(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	return testenv.Run(ctx, s.bins.Gateway(), s.env(), args...)
}

func (s *stack) startProcesses(ctx context.Context) error {
	addr, err := testenv.PickAddr()
	if err != nil {
		return err
	}
	s.httpAddr = addr
	for i := 1; i <= s.cfg.workers; i++ {
		p, err := s.start(ctx, s.bins.Worker(), fmt.Sprintf("worker-%d", i))
		if err != nil {
			return err
		}
		s.workers = append(s.workers, p)
	}
	if s.gateway, err = s.start(ctx, s.bins.Gateway(), "gateway"); err != nil {
		return err
	}
	gw, workers := s.pids()
	progress("stack: gateway pid %d on %s, worker pids %v", gw, s.httpAddr, workers)
	return nil
}

// start runs binary bin as name, logging to name.log in the work directory,
// and waits until its /readyz answers 200.
func (s *stack) start(ctx context.Context, bin, name string) (*testenv.Proc, error) {
	p, err := testenv.StartProc(ctx, testenv.ProcConfig{
		Path:    bin,
		Name:    name,
		Env:     s.env(),
		LogFile: filepath.Join(s.dir, name+".log"),
		// Own process group: a Ctrl-C on the terminal reaches the bench only.
		// The parent-death signal stops the process should the bench be
		// killed outright.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM},
	})
	if err != nil {
		return nil, err
	}
	s.undo.Add("stop "+name, p.Stop)
	return p, nil
}

func (s *stack) httpURL() string { return "http://" + s.httpAddr + "/" }

// pids are the gateway's and the workers' process ids.
func (s *stack) pids() (gateway int, workers []int) {
	for _, w := range s.workers {
		workers = append(workers, w.Pid())
	}
	return s.gateway.Pid(), workers
}
