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
// tests' harness (shared/testenv): its own database, vhost and claimed Redis
// DB, binaries built from this tree, one worker and one gateway.
type stack struct {
	cfg  config
	srv  testenv.Servers
	name string // of the database and the vhost
	dir  string // binaries, process logs, tenant storage
	bins testenv.Binaries

	dbURL, amqpURL, redisURL, httpAddr string
	key                                string // the partner's, valid

	gateway *testenv.Proc
	undo    testenv.Teardown
}

func newStack(cfg config) *stack {
	srv := cfg.servers
	srv.Logf = progress
	return &stack{cfg: cfg, srv: srv, name: testenv.Name("preauth")}
}

// up creates everything and starts the processes; whatever it made is
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
		{"migrate", func(ctx context.Context) error { _, err := s.admin(ctx, "migrate"); return err }},
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

// close undoes up, last step first, within teardownLimit.
func (s *stack) close() error { return s.undo.Run(teardownLimit) }

func (s *stack) makeDir(context.Context) error {
	dir, err := os.MkdirTemp("", "oneoffice-preauth-")
	if err != nil {
		return err
	}
	s.dir = dir
	s.undo.Add("remove "+dir, func(context.Context) error {
		if s.cfg.keep {
			fmt.Fprintf(os.Stderr, "preauth: kept %s\n", dir)
			return nil
		}
		return os.RemoveAll(dir)
	})
	return os.MkdirAll(filepath.Join(dir, "tenants"), 0o750)
}

func (s *stack) createDatabase(ctx context.Context) (err error) {
	var drop func(context.Context) error
	if s.dbURL, drop, err = s.srv.CreateDatabase(ctx, s.name); err == nil {
		s.undo.Add("drop database "+s.name, drop)
	}
	return err
}

func (s *stack) createVhost(ctx context.Context) (err error) {
	var del func(context.Context) error
	if s.amqpURL, del, err = s.srv.CreateVhost(ctx, s.name); err == nil {
		s.undo.Add("delete vhost "+s.name, del)
	}
	return err
}

// claimRedis claims -redis-db, or the first free DB, as the tests do.
func (s *stack) claimRedis(ctx context.Context) error {
	r, err := s.srv.ClaimRedis(ctx, "preauth "+s.name, s.cfg.redisDB)
	if err != nil {
		return err
	}
	s.undo.Add(fmt.Sprintf("release Redis DB %d", r.DB), r.Release)
	s.redisURL = r.URL
	return nil
}

func (s *stack) build(ctx context.Context) (err error) {
	s.bins, err = testenv.Build(ctx, s.dir)
	return err
}

// env is what both processes get on top of the bench's own environment.
func (s *stack) env() []string {
	env := []string{
		"DATABASE_URL=" + s.dbURL,
		"AMQP_URL=" + s.amqpURL,
		"REDIS_URL=" + s.redisURL,
		"HTTP_ADDR=" + s.httpAddr,
		"STORAGE_ROOT=" + filepath.Join(s.dir, "tenants"),
		"RATE_LIMIT_RPS=0",
		"CLIENT_RATE_LIMIT_RPS=" + strconv.FormatFloat(s.cfg.clientRPS, 'f', -1, 64),
		// The per-request log line is part of the real cost of a refused
		// call: keep it.
		"LOG_LEVEL=info",
	}
	if s.cfg.gomaxprocs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(s.cfg.gomaxprocs))
	}
	return env
}

func (s *stack) createKey(ctx context.Context) error {
	key, err := s.admin(ctx, "keys", "create", "--partner", "preauth")
	if err != nil {
		return err
	}
	if key == "" || strings.ContainsAny(key, " \n") {
		return fmt.Errorf("keys create printed %q, want only a key", key)
	}
	s.key = key
	return nil
}

func (s *stack) admin(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	return testenv.Run(ctx, s.bins.Gateway(), s.env(), args...)
}

func (s *stack) startProcesses(ctx context.Context) (err error) {
	if s.httpAddr, err = testenv.PickAddr(); err != nil {
		return err
	}
	if _, err = s.start(ctx, s.bins.Worker(), "worker"); err != nil {
		return err
	}
	s.gateway, err = s.start(ctx, s.bins.Gateway(), "gateway")
	if err == nil {
		progress("stack: gateway pid %d on %s", s.gateway.Pid(), s.httpAddr)
	}
	return err
}

// start runs bin as name, logging to the work directory, and waits until it
// is ready.
func (s *stack) start(ctx context.Context, bin, name string) (*testenv.Proc, error) {
	p, err := testenv.StartProc(ctx, testenv.ProcConfig{
		Path: bin, Name: name, Env: s.env(), LogFile: filepath.Join(s.dir, name+".log"),
		// Own process group: a Ctrl-C reaches the bench only, which stops
		// the processes in order; the parent-death signal stops them should
		// the bench be killed outright.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM},
	})
	if err != nil {
		return nil, err
	}
	s.undo.Add("stop "+name, p.Stop)
	return p, nil
}
