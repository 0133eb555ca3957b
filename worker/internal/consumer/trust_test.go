package consumer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/testenv"
	"github.com/oneoffice/provisioner/worker/internal/provision"
)

// keyed builds a command the way the gateway does: canonical params, the key
// (header or derived) scoped to the partner, a token and the fingerprint.
func keyed(t testing.TB, partner int64, method, params, header string) protocol.Command {
	t.Helper()
	p, perr := protocol.DecodeParams(method, []byte(params))
	if perr != nil {
		t.Fatalf("%s %s: %v", method, params, perr)
	}
	m, _ := protocol.Lookup(method)
	c := protocol.Command{Method: method, Def: m, Partner: partner, RequestID: "rid-" + method, Params: protocol.Canonical(p)}
	key, derived := header, false
	if key == "" {
		key, derived = m.Key(p), true
	}
	if key != "" {
		c.IdemKey = idempotency.Key(partner, key, derived)
		c.IdemToken = idempotency.NewToken()
		c.IdemFP = idempotency.Fingerprint(method, c.Params)
	}
	return c
}

const customerABC = `{"id":"ABC","name":"ABC Company","admin":{"email":"a@example.com"}}`

// verify takes what the gateway sends and refuses every header its params do
// not bear out.
func TestVerifyChecksTheHeadersAgainstTheParams(t *testing.T) {
	for _, c := range []struct {
		name  string
		cmd   func() protocol.Command
		valid bool
	}{
		{"derived key", func() protocol.Command { return keyed(t, 7, protocol.CreateCustomer, customerABC, "") }, true},
		{"header key", func() protocol.Command { return keyed(t, 7, protocol.CreateCustomer, customerABC, "k-1") }, true},
		{"keyed method without a key", func() protocol.Command { return keyed(t, 7, protocol.SuspendOrder, `{"id":"O1"}`, "") }, true},
		{"read without a key", func() protocol.Command { return keyed(t, 7, protocol.GetCustomer, `{"id":"ABC"}`, "") }, true},
		{"key of another partner", func() protocol.Command {
			c := keyed(t, 7, protocol.CreateCustomer, customerABC, "")
			c.IdemKey = idempotency.Key(8, "customer:ABC", true)
			return c
		}, false},
		{"header key of another partner", func() protocol.Command {
			c := keyed(t, 7, protocol.CreateCustomer, customerABC, "k-1")
			c.Partner = 8
			return c
		}, false},
		{"partner written otherwise", func() protocol.Command {
			c := keyed(t, 7, protocol.CreateCustomer, customerABC, "")
			c.IdemKey = strings.Replace(c.IdemKey, ":7:", ":07:", 1)
			return c
		}, false},
		{"key of another format", func() protocol.Command {
			c := keyed(t, 7, protocol.CreateCustomer, customerABC, "")
			c.IdemKey = "oo:test:flaky"
			return c
		}, false},
		{"key of another kind", func() protocol.Command {
			c := keyed(t, 7, protocol.CreateCustomer, customerABC, "")
			c.IdemKey = "oo:idem:7:x:customer:ABC"
			return c
		}, false},
		{"empty key", func() protocol.Command {
			c := keyed(t, 7, protocol.CreateCustomer, customerABC, "")
			c.IdemKey = idempotency.Key(7, "", false)
			return c
		}, false},
		{"header key too long", func() protocol.Command {
			return keyed(t, 7, protocol.CreateCustomer, customerABC, strings.Repeat("k", 256))
		}, false},
		{"header key with a control character", func() protocol.Command {
			return keyed(t, 7, protocol.CreateCustomer, customerABC, "k\n1")
		}, false},
		{"derived key of other params", func() protocol.Command {
			c := keyed(t, 7, protocol.CreateCustomer, customerABC, "")
			c.IdemKey = idempotency.Key(7, "customer:OTHER", true)
			return c
		}, false},
		{"derived key of a method without one", func() protocol.Command {
			c := keyed(t, 7, protocol.CancelOrder, `{"id":"O1"}`, "k")
			c.IdemKey = idempotency.Key(7, "order:O1", true)
			return c
		}, false},
		{"fingerprint of other params", func() protocol.Command {
			c := keyed(t, 7, protocol.CreateCustomer, customerABC, "")
			c.Params = []byte(`{"id":"ABC","name":"Forged","admin":{"email":"a@example.com"}}`)
			return c
		}, false},
		{"fingerprint of another method", func() protocol.Command {
			c := keyed(t, 7, protocol.SuspendOrder, `{"id":"O1"}`, "k")
			c.IdemFP = idempotency.Fingerprint(protocol.CancelOrder, c.Params)
			return c
		}, false},
		{"params that do not validate", func() protocol.Command {
			c := keyed(t, 7, protocol.CreateCustomer, customerABC, "k")
			c.Params = []byte(`{"id":"ABC"}`)
			c.IdemFP = idempotency.Fingerprint(c.Method, c.Params)
			return c
		}, false},
		{"read with a key", func() protocol.Command {
			c := keyed(t, 7, protocol.GetCustomer, `{"id":"ABC"}`, "")
			c.IdemKey, c.IdemToken = idempotency.Key(7, "read-1", false), "tok"
			c.IdemFP = idempotency.Fingerprint(c.Method, c.Params)
			return c
		}, false},
		{"resetUser with a key", func() protocol.Command {
			c := keyed(t, 7, protocol.ResetUser, `{"email":"ann@example.com"}`, "")
			c.IdemKey, c.IdemToken = idempotency.Key(7, "reset-1", false), "tok"
			c.IdemFP = idempotency.Fingerprint(c.Method, c.Params)
			return c
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := c.cmd()
			err := verify(&cmd)
			if c.valid && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.valid && !errors.Is(err, protocol.ErrUntrusted) {
				t.Fatalf("error %v, want protocol.ErrUntrusted", err)
			}
		})
	}
}

// trustStack is a worker on the real services with the real provisioning
// service: a migrated database with two partners, Redis, and a vhost.
type trustStack struct {
	db     *pgxpool.Pool
	rdb    *redis.Client
	idem   *idempotency.Store
	m      *Metrics
	ch     *amqp.Channel
	a, b   int64 // partners
	logBuf *syncLog
}

func newTrustStack(t *testing.T) *trustStack {
	t.Helper()
	ctx := context.Background()
	s := &trustStack{m: NewMetrics(prometheus.NewRegistry(), 4), logBuf: &syncLog{}}
	db, err := store.Open(ctx, testenv.Database(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	s.db = db
	for _, p := range []*int64{&s.a, &s.b} {
		if err := db.QueryRow(ctx, `INSERT INTO partners (name) VALUES ($1) RETURNING id`, testenv.Name("p")).Scan(p); err != nil {
			t.Fatal(err)
		}
	}
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	s.rdb = redis.NewClient(opt)
	t.Cleanup(func() { s.rdb.Close() })
	s.idem = idempotency.NewStore(s.rdb, time.Hour)
	url := testenv.Vhost(t)
	svc := provision.New(db, provision.Config{StorageRoot: t.TempDir(), RenewalWindow: 15 * 24 * time.Hour},
		provision.NewMetrics(prometheus.NewRegistry()))
	c := New(Config{AMQPURL: url, Concurrency: 4, Prefetch: 8, ShutdownTimeout: 5 * time.Second}, svc,
		provision.IsTransient, s.idem, slog.New(slog.NewJSONHandler(s.logBuf, nil)), s.m)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if s.ch, err = conn.Channel(); err != nil {
		t.Fatal(err)
	}
	if err := amqpx.Declare(s.ch); err != nil {
		t.Fatal(err)
	}
	return s
}

// hold takes the idempotency record of c as the gateway does before it
// publishes, and returns the record's value.
func (s *trustStack) hold(t *testing.T, c protocol.Command) string {
	t.Helper()
	if out, _, err := s.idem.Acquire(context.Background(), c.IdemKey, c.IdemToken, c.IdemFP); err != nil || out != idempotency.New {
		t.Fatalf("acquire %s: %v %v", c.IdemKey, out, err)
	}
	return s.record(t, c.IdemKey)
}

func (s *trustStack) record(t *testing.T, key string) string {
	t.Helper()
	v, err := s.rdb.Get(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("record %s: %v", key, err)
	}
	return v
}

func (s *trustStack) publish(t *testing.T, p amqp.Publishing) {
	t.Helper()
	if err := s.ch.Publish(amqpx.Exchange, amqpx.RoutingKey, true, false, p); err != nil {
		t.Fatal(err)
	}
}

func (s *trustStack) depth(t *testing.T, queue string) int {
	t.Helper()
	q, err := s.ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

// settled counts the commands the worker is done with, whatever the outcome.
func (s *trustStack) settled() int {
	n := 0.0
	for _, method := range protocol.Names() {
		for _, o := range []string{OutcomeOK, OutcomeRejected, OutcomeDeadLettered} {
			n += testutil.ToFloat64(s.m.commands.WithLabelValues(method, o))
		}
	}
	return int(n)
}

func (s *trustStack) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// waitUntil polls cond; the limit only bounds a failing test.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Messages forged onto the command queue, each the copy of a call in flight
// with one header or the body changed, as a compromised or buggy publisher
// would send them. None runs: nothing is provisioned, each is dead-lettered as
// invalid and logged, and the idempotency record it names, held by the
// genuine call, is left exactly as it was (neither completed with the forged
// command's answer nor released). A genuine command published with them runs.
func TestForgedCommandsAreRefusedUnrun(t *testing.T) {
	s := newTrustStack(t)
	ctx := context.Background()

	// Partner B's call in flight; A's forgery names B's record.
	ofB := keyed(t, s.b, protocol.CreateCustomer, `{"id":"X1","name":"B's","admin":{"email":"b@example.com"}}`, "")
	wrongPartner := keyed(t, s.a, protocol.CreateCustomer, `{"id":"X1","name":"A's","admin":{"email":"a@example.com"}}`, "")
	wrongPartner.IdemKey, wrongPartner.IdemToken = ofB.IdemKey, ofB.IdemToken

	// A's genuine call in flight, its params changed and the headers kept.
	inFlight := keyed(t, s.a, protocol.CreateCustomer, `{"id":"X2","name":"Genuine","admin":{"email":"a@example.com"}}`, "")
	otherParams := inFlight
	otherParams.Params = []byte(`{"id":"X2","name":"Forged","admin":{"email":"a@example.com"}}`)

	// A derived key of another customer than the params create.
	otherKey := keyed(t, s.a, protocol.CreateCustomer, `{"id":"X3","name":"N","admin":{"email":"a@example.com"}}`, "")
	otherKey.IdemKey = idempotency.Key(s.a, "customer:OTHER", true)

	// Valid params, fingerprint and key, padded with blanks past the limit.
	big := keyed(t, s.a, protocol.CreateCustomer, `{"id":"X4","name":"N","admin":{"email":"a@example.com"}}`, "big-1")
	big.Params = append(append([]byte{}, big.Params...), bytes.Repeat([]byte(" "), protocol.MaxBody)...)

	// A read carrying a key whose record it would complete.
	read := keyed(t, s.a, protocol.GetCustomer, `{"id":"X2"}`, "")
	read.IdemKey, read.IdemToken = idempotency.Key(s.a, "read-1", false), idempotency.NewToken()
	read.IdemFP = idempotency.Fingerprint(read.Method, read.Params)

	forged := []struct {
		name string
		cmd  protocol.Command
		held protocol.Command // the genuine call whose record the forgery names
	}{
		{"wrong partner in the key", wrongPartner, ofB},
		{"fingerprint not of the params", otherParams, inFlight},
		{"derived key not of the params", otherKey, otherKey},
		{"oversized body", big, big},
		{"read method with a key", read, read},
	}
	records := make([]string, len(forged))
	for i, f := range forged {
		records[i] = s.hold(t, f.held)
	}
	for _, f := range forged {
		s.publish(t, f.cmd.Publishing("", ""))
	}
	ok := keyed(t, s.a, protocol.CreateCustomer, `{"id":"OK1","name":"Fine","admin":{"email":"a@example.com"}}`, "")
	s.hold(t, ok)
	s.publish(t, ok.Publishing("", ""))

	waitUntil(t, "every command settled", func() bool { return s.settled() == len(forged)+1 })
	// The broker routes a rejected message to the dead-letter queue after
	// the worker's nack, which it does not confirm: wait for the copies.
	waitUntil(t, "the forged commands in the dead-letter queue", func() bool {
		return s.depth(t, amqpx.DeadQueue) >= len(forged)
	})
	if n := s.depth(t, amqpx.DeadQueue); n != len(forged) {
		t.Errorf("%d messages in the DLQ, want %d", n, len(forged))
	}
	if got := testutil.ToFloat64(s.m.deadLettered.WithLabelValues("invalid")); got != float64(len(forged)) {
		t.Errorf("dead-lettered as invalid: %v, want %d", got, len(forged))
	}
	if n := s.count(t, `SELECT count(*) FROM tenants`); n != 1 {
		t.Errorf("%d tenants, want only the genuine OK1", n)
	}
	if n := s.count(t, `SELECT count(*) FROM tenants WHERE remote_id = 'OK1' AND partner_id = $1`, s.a); n != 1 {
		t.Errorf("the genuine command did not provision OK1")
	}
	if got := testutil.ToFloat64(s.m.commands.WithLabelValues(protocol.CreateCustomer, OutcomeDeadLettered)); got != 4 {
		t.Errorf("createCustomer dead-lettered %v, want 4", got)
	}
	if got := testutil.ToFloat64(s.m.commands.WithLabelValues(protocol.GetCustomer, OutcomeDeadLettered)); got != 1 {
		t.Errorf("getCustomer dead-lettered %v, want 1", got)
	}
	for i, f := range forged {
		if got := s.record(t, f.held.IdemKey); got != records[i] {
			t.Errorf("%s: the record of %s changed from %q to %q", f.name, f.held.IdemKey, records[i], got)
		}
		if out, _, err := s.idem.Acquire(ctx, f.held.IdemKey, "retry", f.held.IdemFP); err != nil || out != idempotency.InProgress {
			t.Errorf("%s: the genuine call's retry is %v (%v), want in_progress", f.name, out, err)
		}
	}
	if out, res, err := s.idem.Acquire(ctx, ok.IdemKey, "retry", ok.IdemFP); err != nil || out != idempotency.Replay || res.Status != 200 {
		t.Errorf("the genuine command's record: %v %d %v, want its stored 200", out, res.Status, err)
	}
	if n := strings.Count(s.logBuf.String(), `"reason":"invalid"`); n != len(forged) {
		t.Errorf("%d log lines with reason invalid, want %d:\n%s", n, len(forged), s.logBuf.String())
	}
	if strings.Contains(s.logBuf.String(), ofB.IdemToken) {
		t.Error("a lock token was logged")
	}
}

// syncLog collects the worker's log lines.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

var _ io.Writer = (*syncLog)(nil)

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
