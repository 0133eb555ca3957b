package consumer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/testenv"
)

var errFlaky = errors.New("database unreachable")

// faultyHandler injects faults: it panics on resetUser, fails transiently
// the first flaky calls of getOrder, and answers everything else.
type faultyHandler struct {
	flaky atomic.Int32
	mu    sync.Mutex
	seen  map[string]int
}

var _ Handler = (*faultyHandler)(nil)

func (h *faultyHandler) Handle(_ context.Context, cmd *protocol.Command) (protocol.Result, error) {
	h.mu.Lock()
	h.seen[cmd.RequestID]++
	h.mu.Unlock()
	switch cmd.Method {
	case protocol.ResetUser:
		panic("boom")
	case protocol.GetOrder:
		if h.flaky.Add(-1) >= 0 {
			return protocol.Result{}, errFlaky
		}
	}
	return protocol.Result{Status: 200, Body: []byte(`{"ok":true}`)}, nil
}

type harness struct {
	h    *faultyHandler
	m    *Metrics
	ch   *amqp.Channel
	rdb  *redis.Client
	idem *idempotency.Store
}

func start(t *testing.T) *harness {
	t.Helper()
	url := testenv.Vhost(t)
	opt, _ := redis.ParseURL(testenv.Redis(t, 10))
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	hs := &harness{h: &faultyHandler{seen: map[string]int{}}, m: NewMetrics(prometheus.NewRegistry(), 4), rdb: rdb,
		idem: idempotency.NewStore(rdb, time.Hour)}
	hs.h.flaky.Store(3)
	c := New(Config{AMQPURL: url, Concurrency: 4, Prefetch: 8, ShutdownTimeout: 5 * time.Second}, hs.h,
		func(err error) bool { return errors.Is(err, errFlaky) }, hs.idem,
		slog.New(slog.NewJSONHandler(io.Discard, nil)), hs.m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
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
	hs.ch, _ = conn.Channel()
	if err := amqpx.Declare(hs.ch); err != nil {
		t.Fatal(err)
	}
	return hs
}

func (hs *harness) publish(t *testing.T, p amqp.Publishing) {
	t.Helper()
	if err := hs.ch.Publish(amqpx.Exchange, amqpx.RoutingKey, false, false, p); err != nil {
		t.Fatal(err)
	}
}

func (hs *harness) depth(t *testing.T, queue string) int {
	t.Helper()
	q, err := hs.ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func command(method, rid string) protocol.Command {
	return protocol.Command{Method: method, Partner: 1, RequestID: rid, Params: []byte(`{"id":"O1"}`)}
}

func TestBadMessagesAreDeadLetteredAndTheWorkerGoesOn(t *testing.T) {
	hs := start(t)
	bad := []amqp.Publishing{
		{Type: "dropTables", Body: []byte(`{}`), Headers: amqp.Table{"partner": int64(1)}},
		{Type: protocol.GetOrder, Body: []byte(`{"id":"O1"}`)}, // no partner
		{Type: protocol.GetOrder, Body: []byte(`{"id":"O1"}`), Headers: amqp.Table{"partner": "one"}},
	}
	for _, p := range bad {
		hs.publish(t, p)
	}
	c := command(protocol.ResetUser, "panics")
	hs.publish(t, c.Publishing("", ""))
	ok := command(protocol.GetCustomer, "fine")
	hs.publish(t, ok.Publishing("", ""))
	eventually(t, "5 messages dead-lettered or done", func() bool {
		return hs.depth(t, amqpx.DeadQueue) == 4 && testutil.ToFloat64(hs.m.commands.WithLabelValues(protocol.GetCustomer, OutcomeOK)) == 1
	})
	if got := testutil.ToFloat64(hs.m.deadLettered.WithLabelValues("decode")); got != 3 {
		t.Errorf("dead-lettered as undecodable: %v, want 3", got)
	}
	if got := testutil.ToFloat64(hs.m.deadLettered.WithLabelValues("panic")); got != 1 {
		t.Errorf("dead-lettered after a panic: %v, want 1", got)
	}
	if hs.h.seen["panics"] != 1 {
		t.Errorf("the panicking command ran %d times, want once", hs.h.seen["panics"])
	}
}

func TestTransientFailuresAreRetriedInPlace(t *testing.T) {
	hs := start(t)
	c := command(protocol.GetOrder, "flaky")
	c.IdemKey, c.IdemToken, c.IdemFP = "oo:test:flaky", "tok", "fp"
	if out, _, err := hs.idem.Acquire(context.Background(), c.IdemKey, c.IdemToken, c.IdemFP); err != nil || out != idempotency.New {
		t.Fatalf("acquire: %v %v", out, err)
	}
	hs.publish(t, c.Publishing("", ""))
	eventually(t, "the flaky command to succeed", func() bool {
		return testutil.ToFloat64(hs.m.commands.WithLabelValues(protocol.GetOrder, OutcomeOK)) == 1
	})
	if hs.h.seen["flaky"] != 4 {
		t.Errorf("handler ran %d times, want 4 (3 failures, then success)", hs.h.seen["flaky"])
	}
	if got := testutil.ToFloat64(hs.m.redeliveries); got != 0 {
		t.Errorf("redeliveries %v: retries must not go back to the broker", got)
	}
	if hs.depth(t, amqpx.DeadQueue) != 0 {
		t.Error("a transient failure was dead-lettered")
	}
	// The result was stored in the idempotency record before the ack.
	out, res, err := hs.idem.Acquire(context.Background(), c.IdemKey, "other", c.IdemFP)
	if err != nil || out != idempotency.Replay || res.Status != 200 || string(res.Body) != `{"ok":true}` {
		t.Fatalf("stored result: %v %+v %v", out, res, err)
	}
}
