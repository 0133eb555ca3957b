package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/testenv"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "oneoffice-e2e")
	if err != nil {
		panic(err)
	}
	build := exec.Command("go", "build", "-o", dir+string(os.PathSeparator),
		"github.com/oneoffice/provisioner/gateway", "github.com/oneoffice/provisioner/worker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// redisDBs hands each stack its own Redis DB (1-8; 9 and 10 belong to the
// idempotency and consumer tests, 11-13 to the scripts); the stacks of this
// package run one after the other.
var redisDBs atomic.Int32

// Stack is one isolated deployment: its database, vhost and Redis DB, and the
// gateway and worker processes the test starts on it.
type Stack struct {
	t        *testing.T
	env      []string
	HTTPAddr string
	Key      string
	Storage  string
	client   *http.Client
	dbOnce   sync.Once
	db       *pgxpool.Pool
	DBURL    string
	AMQPURL  string
	RedisURL string
}

// NewStack prepares an isolated stack, migrated, with one partner key.
// extra env (KEY=VALUE) applies to every process.
func NewStack(t *testing.T, extra ...string) *Stack {
	t.Helper()
	s := &Stack{t: t, HTTPAddr: testenv.FreeAddr(t), Storage: t.TempDir(),
		client: &http.Client{Timeout: 15 * time.Second}}
	s.DBURL = testenv.Database(t)
	s.AMQPURL = testenv.Vhost(t)
	s.RedisURL = testenv.Redis(t, int(redisDBs.Add(1)%8)+1)
	s.env = append([]string{
		"DATABASE_URL=" + s.DBURL, "AMQP_URL=" + s.AMQPURL, "REDIS_URL=" + s.RedisURL,
		"HTTP_ADDR=" + s.HTTPAddr, "STORAGE_ROOT=" + s.Storage, "LOG_LEVEL=debug",
	}, extra...)
	s.admin("migrate")
	s.Key = s.NewKey("Partner A")
	return s
}

// admin runs a gateway admin subcommand and returns its stdout.
func (s *Stack) admin(args ...string) string {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "gateway"), args...)
	cmd.Env = append(os.Environ(), s.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("gateway %v: %v: %s", args, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// NewKey creates a key for partner (created if new).
func (s *Stack) NewKey(partner string) string {
	return s.admin("keys", "create", "--partner", partner)
}

// Proc is a running gateway or worker.
type Proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	log     *syncBuffer
	Metrics string
	done    chan struct{}
	exit    error
}

// StartGateway starts a gateway and waits until it is ready.
func (s *Stack) StartGateway(env ...string) *Proc { return s.start("gateway", env) }

// StartWorker starts a worker and waits until it is ready.
func (s *Stack) StartWorker(env ...string) *Proc { return s.start("worker", env) }

func (s *Stack) start(bin string, env []string) *Proc {
	s.t.Helper()
	p := &Proc{t: s.t, log: &syncBuffer{}, Metrics: testenv.FreeAddr(s.t), done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, bin))
	p.cmd.Env = append(append(append(os.Environ(), s.env...), "METRICS_ADDR="+p.Metrics), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.exit = p.cmd.Wait(); close(p.done) }()
	s.t.Cleanup(p.Stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + p.Metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			s.t.Fatalf("%s exited at start: %v\n%s", bin, p.exit, p.log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s not ready after 20s:\n%s", bin, p.log.String())
		}
	}
}

// Stop sends SIGTERM and waits for a clean exit; it is safe to call twice.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.exit != nil {
			p.t.Errorf("%s exited with %v after SIGTERM\n%s", p.cmd.Path, p.exit, p.log.String())
		}
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("%s did not stop within 20s of SIGTERM", p.cmd.Path)
	}
}

// Log returns what the process wrote so far.
func (p *Proc) Log() string { return p.log.String() }

// Response is an HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map.
func (r Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	return m
}

// ErrorCode is error.code of an error body.
func (r Response) ErrorCode(t testing.TB) string {
	e, _ := r.JSON(t)["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// Do sends a raw request with GET, as partners' examples do.
func (s *Stack) Do(key, body string, headers ...string) Response {
	s.t.Helper()
	return s.do(s.client, http.MethodGet, key, body, headers...)
}

func (s *Stack) do(client *http.Client, verb, key, body string, headers ...string) Response {
	s.t.Helper()
	req, _ := http.NewRequest(verb, "http://"+s.HTTPAddr+"/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("x-api-key", key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", verb, body, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Call sends {"method","params"} with the stack's key.
func (s *Stack) Call(method string, params any, headers ...string) Response {
	s.t.Helper()
	return s.Do(s.Key, envelope(method, params), headers...)
}

// Want calls and checks the status.
func (s *Stack) Want(status int, method string, params any, headers ...string) map[string]any {
	s.t.Helper()
	r := s.Call(method, params, headers...)
	if r.Status != status {
		s.t.Fatalf("%s %v: status %d, want %d: %s", method, params, r.Status, status, r.Body)
	}
	return r.JSON(s.t)
}

// Eventually repeats a call until it answers status, failing after within.
func (s *Stack) Eventually(status int, within time.Duration, method string, params any) Response {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := s.Call(method, params)
		if r.Status == status {
			return r
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: still %d %s after %v, want %d", method, r.Status, r.Body, within, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func envelope(method string, params any) string {
	b, _ := json.Marshal(map[string]any{"method": method, "params": params})
	return string(b)
}

// DB is a pool on the stack's database.
func (s *Stack) DB() *pgxpool.Pool {
	s.dbOnce.Do(func() {
		db, err := pgxpool.New(context.Background(), s.DBURL)
		if err != nil {
			s.t.Fatal(err)
		}
		s.db = db
		s.t.Cleanup(db.Close)
	})
	return s.db
}

// Count runs a count(*) query.
func (s *Stack) Count(sql string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.DB().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type m = map[string]any
