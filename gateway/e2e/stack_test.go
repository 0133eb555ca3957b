package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// bins are the gateway and worker binaries built once for the package.
var bins testenv.Binaries

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "oneoffice-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if bins, err = testenv.Build(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		return 1
	}
	code := m.Run()
	if testing.Verbose() {
		fmt.Printf("e2e: %d answers and webhook events held to the OpenAPI document\n", checked.Load())
	}
	ctx, cancel = context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if err := vhosts.close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "deleting the vhosts:", err)
		code = max(code, 1)
	}
	return code
}

// Time limits of the harness. They bound waits for something the contract
// promises will happen; a passing test does not wait for them.
const (
	clientTimeout = 30 * time.Second // one HTTP call; the gateway answers within its RPC deadline
	settleWithin  = 60 * time.Second // repeating a call answered 202 pending until its result
	adminTimeout  = 2 * time.Minute  // one admin subcommand
)

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
		client: &http.Client{Timeout: clientTimeout}}
	s.DBURL = testenv.Database(t)
	s.AMQPURL = vhosts.get(t)
	s.RedisURL = testenv.Redis(t)
	s.env = append([]string{
		"DATABASE_URL=" + s.DBURL, "AMQP_URL=" + s.AMQPURL, "REDIS_URL=" + s.RedisURL,
		"HTTP_ADDR=" + s.HTTPAddr, "STORAGE_ROOT=" + s.Storage, "LOG_LEVEL=debug",
		// The bounds that turn a silent Redis or database into a 503 within
		// a second are for a cut link; a test machine busy with other work
		// can stall a live one that long. A test may set its own.
		"IDEMPOTENCY_ACQUIRE_TIMEOUT=3s", "AUTH_LOOKUP_TIMEOUT=3s", "READ_TIMEOUT=3s",
	}, extra...)
	s.admin("migrate")
	s.Key = s.NewKey("Partner A")
	return s
}

// admin runs a gateway admin subcommand and returns its stdout.
func (s *Stack) admin(args ...string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	out, err := testenv.Run(ctx, bins.Gateway(), s.env, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// NewKey creates a key for partner (created if new).
func (s *Stack) NewKey(partner string) string {
	return s.admin("keys", "create", "--partner", partner)
}

// Proc is a running gateway or worker of a test.
type Proc struct {
	*testenv.Proc
	t   *testing.T
	cmd *exec.Cmd
}

// StartGateway starts a gateway and waits until it is ready.
func (s *Stack) StartGateway(env ...string) *Proc { return s.start(bins.Gateway(), env) }

// StartWorker starts a worker and waits until it is ready.
func (s *Stack) StartWorker(env ...string) *Proc { return s.start(bins.Worker(), env) }

func (s *Stack) start(bin string, env []string) *Proc {
	s.t.Helper()
	p := s.launch(bin, env)
	if err := p.WaitReady(context.Background()); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// launch starts a process without waiting for it to be ready; it is stopped
// at cleanup.
func (s *Stack) launch(bin string, env []string) *Proc {
	s.t.Helper()
	tp := testenv.Launch(s.t, testenv.ProcConfig{Path: bin, Env: append(slices.Clone(s.env), env...)})
	return &Proc{Proc: tp, t: s.t, cmd: tp.Cmd()}
}

// Stop sends SIGTERM and waits for a clean exit; it is safe to call twice.
func (p *Proc) Stop() {
	if err := p.Proc.Stop(context.Background()); err != nil {
		p.t.Error(err)
	}
}

// Response is an HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// Pending counts the answers "still running" (202 pending, then 409
	// request_in_progress) the call got before this one. A result that
	// follows them is the stored one: replayed (SPEC sections 3 and 5).
	Pending int
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

// stillRunning reports an answer that says the call's result is not there
// yet: a 202, or, once the call was answered 202, the 409 of the same call
// repeated while it runs.
func (r Response) stillRunning(afterPending bool) bool {
	if r.Status == http.StatusAccepted {
		return true
	}
	if !afterPending || r.Status != http.StatusConflict {
		return false
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	return json.Unmarshal(r.Body, &e) == nil && e.Error.Code == "request_in_progress"
}

// send makes one request; it may run in any goroutine.
func (s *Stack) send(client *http.Client, verb, key, body string, headers ...string) (Response, error) {
	req, err := http.NewRequest(verb, "http://"+s.HTTPAddr+"/", strings.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("x-api-key", key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", verb, body, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: read the answer: %w", verb, body, err)
	}
	r := Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	checkAnswer(s.t, verb, body, headers, r)
	return r, nil
}

// settle makes a call the way SPEC section 5 tells partners to: while it is
// answered "still running", the same call is repeated until its result is
// there. It may run in any goroutine.
func (s *Stack) settle(client *http.Client, verb, key, body string, headers ...string) (Response, error) {
	deadline := time.Now().Add(settleWithin)
	pause := 100 * time.Millisecond
	for pending := 0; ; pending++ {
		r, err := s.send(client, verb, key, body, headers...)
		if err != nil || !r.stillRunning(pending > 0) {
			r.Pending = pending
			return r, err
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%s: still %d %s after %v of repeating it", body, r.Status, r.Body, settleWithin)
		}
		time.Sleep(pause)
		pause = min(2*pause, time.Second)
	}
}

// do sends one request and returns the first answer, 202 included.
func (s *Stack) do(client *http.Client, verb, key, body string, headers ...string) Response {
	s.t.Helper()
	r, err := s.send(client, verb, key, body, headers...)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// Do sends a call with GET, as partners' examples do, and returns its result:
// an answer 202 pending is followed by the same call until the result is there.
func (s *Stack) Do(key, body string, headers ...string) Response {
	s.t.Helper()
	r, err := s.settle(s.client, http.MethodGet, key, body, headers...)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// DoOnce sends a call once with GET and returns the first answer, 202 included.
func (s *Stack) DoOnce(key, body string, headers ...string) Response {
	s.t.Helper()
	return s.do(s.client, http.MethodGet, key, body, headers...)
}

// Call sends {"method","params"} with the stack's key and returns its result.
func (s *Stack) Call(method string, params any, headers ...string) Response {
	s.t.Helper()
	return s.Do(s.Key, envelope(method, params), headers...)
}

// CallOnce is Call without repeating a 202: the first answer.
func (s *Stack) CallOnce(method string, params any, headers ...string) Response {
	s.t.Helper()
	return s.DoOnce(s.Key, envelope(method, params), headers...)
}

// Want calls and checks the status of the result.
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
		r := s.CallOnce(method, params)
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

type m = map[string]any
