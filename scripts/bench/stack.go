package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// stack is one isolated deployment on the shared servers, set up the way the
// e2e harness does it: its own database, vhost and Redis DB, binaries built
// from this tree, one gateway and cfg.workers workers on free loopback ports.
type stack struct {
	cfg  config
	name string // of the database and the vhost
	dir  string // binaries, process logs, tenant storage
	root string // STORAGE_ROOT of the workers

	dbURL, amqpURL, redisURL, httpAddr string
	key                                string

	gateway *process
	workers []*process

	undo []func() error // teardown steps, run last first
}

func newStack(cfg config) *stack {
	var b [5]byte
	rand.Read(b[:])
	return &stack{cfg: cfg, name: "bench_" + hex.EncodeToString(b[:])}
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
		{"redis", s.flushRedis},
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

// close stops the processes and removes the database, the vhost, the Redis
// data and the work directory, whatever happened before.
func (s *stack) close() error {
	var errs []error
	for i := len(s.undo) - 1; i >= 0; i-- {
		errs = append(errs, s.undo[i]())
	}
	s.undo = nil
	return errors.Join(errs...)
}

func (s *stack) makeDir(context.Context) error {
	dir, err := os.MkdirTemp("", "oneoffice-bench-")
	if err != nil {
		return err
	}
	s.dir = dir
	s.undo = append(s.undo, func() error {
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
		s.undo = append(s.undo, func() error { return os.RemoveAll(root) })
	}
	return os.MkdirAll(s.root, 0o750)
}

func (s *stack) createDatabase(ctx context.Context) error {
	if err := s.adminSQL(ctx, "CREATE DATABASE "+s.name); err != nil {
		return err
	}
	s.undo = append(s.undo, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return s.adminSQL(ctx, "DROP DATABASE IF EXISTS "+s.name+" WITH (FORCE)")
	})
	u, err := url.Parse(s.cfg.postgresURL)
	if err != nil {
		return fmt.Errorf("parse -postgres: %w", err)
	}
	u.Path = "/" + s.name
	s.dbURL = u.String()
	return nil
}

func (s *stack) adminSQL(ctx context.Context, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.cfg.postgresURL)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

func (s *stack) createVhost(ctx context.Context) error {
	if err := rabbitmqctl(ctx, "add_vhost", s.name); err != nil {
		return err
	}
	s.undo = append(s.undo, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return rabbitmqctl(ctx, "delete_vhost", s.name)
	})
	if err := rabbitmqctl(ctx, "set_permissions", "-p", s.name, "guest", ".*", ".*", ".*"); err != nil {
		return err
	}
	s.amqpURL = strings.TrimSuffix(s.cfg.amqpURL, "/") + "/" + s.name
	return nil
}

func rabbitmqctl(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (s *stack) flushRedis(ctx context.Context) error {
	flush := func(ctx context.Context) error {
		rdb := redis.NewClient(&redis.Options{Addr: s.cfg.redisAddr, DB: s.cfg.redisDB})
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			return fmt.Errorf("flush Redis DB %d: %w", s.cfg.redisDB, err)
		}
		return nil
	}
	if err := flush(ctx); err != nil {
		return err
	}
	s.undo = append(s.undo, func() error { return flush(context.Background()) })
	s.redisURL = fmt.Sprintf("redis://%s/%d", s.cfg.redisAddr, s.cfg.redisDB)
	return nil
}

// build compiles the gateway and the worker of this tree into the work directory.
func (s *stack) build(ctx context.Context) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", s.dir+string(os.PathSeparator), "./gateway", "./worker")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w: %s", err, out)
	}
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run the bench from inside the module (go run ./scripts/bench)")
	}
	return filepath.Dir(gomod), nil
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
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.dir, "gateway"), args...)
	cmd.Env = append(os.Environ(), s.env()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("gateway %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(string(out)), nil
}

func (s *stack) startProcesses(ctx context.Context) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	s.httpAddr = addr
	for i := 1; i <= s.cfg.workers; i++ {
		p, err := s.start(ctx, "worker", fmt.Sprintf("worker-%d", i))
		if err != nil {
			return err
		}
		s.workers = append(s.workers, p)
	}
	if s.gateway, err = s.start(ctx, "gateway", "gateway"); err != nil {
		return err
	}
	gw, workers := s.pids()
	progress("stack: gateway pid %d on %s, worker pids %v", gw, s.httpAddr, workers)
	return nil
}

// start runs binary bin as name and waits until its /readyz answers 200.
func (s *stack) start(ctx context.Context, bin, name string) (*process, error) {
	metrics, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(s.dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &process{name: name, logPath: logPath, metrics: metrics, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(s.dir, bin))
	p.cmd.Env = append(append(os.Environ(), s.env()...), "METRICS_ADDR="+metrics)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	// Own process group: a Ctrl-C on the terminal reaches the bench only. The
	// parent-death signal stops the process should the bench be killed outright.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.exit = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	s.undo = append(s.undo, p.stop)
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

func (s *stack) httpURL() string { return "http://" + s.httpAddr + "/" }

// pids are the gateway's and the workers' process ids.
func (s *stack) pids() (gateway int, workers []int) {
	for _, w := range s.workers {
		workers = append(workers, w.cmd.Process.Pid)
	}
	return s.gateway.cmd.Process.Pid, workers
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// process is a running gateway or worker.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	metrics string
	done    chan struct{}
	exit    error
}

func (p *process) waitReady(ctx context.Context, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for {
		if resp, err := client.Get("http://" + p.metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited at start (%v):\n%s", p.name, p.exit, p.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s:\n%s", p.name, limit, p.logTail())
		}
	}
}

// stop sends SIGTERM and waits for the process to drain and exit.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		if p.exit != nil {
			return fmt.Errorf("%s exited with %v after SIGTERM", p.name, p.exit)
		}
		return nil
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 20s of SIGTERM; killed", p.name)
	}
}

// logTail is the end of the process's log, for error messages.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
