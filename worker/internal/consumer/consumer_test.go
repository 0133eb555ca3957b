package consumer

import (
	"context"
	"errors"
	"fmt"
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
// the first flaky calls of cancelOrder, fails permanently on suspendOrder,
// refuses resumeOrder with an error (an invalid command), refuses
// createFirstOrder (customer_not_found), ends the derived key of the user on
// deleteUser, holds updateOrder until gate closes, and answers everything
// else. It records the failures the consumer hands it.
type faultyHandler struct {
	flaky  atomic.Int32
	gate   chan struct{} // updateOrder waits for it to close
	mu     sync.Mutex
	seen   map[string]int
	failed []string // request ids of the commands recorded as failed
}

var (
	errRefused = errors.New("refused by the database")
	errInvalid = errors.New("params do not validate")
)

// endedKey is the derived key of the user deleteUser deletes.
var endedKey = idempotency.Key(1, "user:ann@example.com", true)

var (
	_ Handler         = (*faultyHandler)(nil)
	_ FailureRecorder = (*faultyHandler)(nil)
)

func (h *faultyHandler) Handle(ctx context.Context, cmd *protocol.Command) (protocol.Result, error) {
	h.mu.Lock()
	h.seen[cmd.RequestID]++
	h.mu.Unlock()
	switch cmd.Method {
	case protocol.ResetUser:
		panic("boom")
	case protocol.CancelOrder:
		if h.flaky.Add(-1) >= 0 {
			return protocol.Result{}, errFlaky
		}
	case protocol.SuspendOrder:
		return protocol.Result{}, errRefused
	case protocol.ResumeOrder:
		return protocol.Result{Status: 400, Body: []byte(`{"error":"invalid_params"}`)}, errInvalid
	case protocol.CreateFirstOrder:
		return protocol.Result{Status: 404, Body: []byte(`{"error":"customer_not_found"}`)}, nil
	case protocol.DeleteUser:
		return protocol.Result{Status: 200, Body: []byte(`{"ok":true}`), Ended: []string{endedKey}}, nil
	case protocol.UpdateOrder:
		select {
		case <-h.gate:
		case <-ctx.Done():
			return protocol.Result{}, ctx.Err()
		}
	}
	return protocol.Result{Status: 200, Body: []byte(`{"ok":true}`)}, nil
}

func (h *faultyHandler) Failed(_ context.Context, cmd *protocol.Command, _ protocol.Result) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failed = append(h.failed, cmd.RequestID)
	return nil
}

type harness struct {
	cancel func() // stops consuming
	stop   func() // stops the consumer and waits for it
	h      *faultyHandler
	m      *Metrics
	reg    *prometheus.Registry
	ch     *amqp.Channel
	rdb    *redis.Client
	idem   *idempotency.Store
	log    *syncLog
	// replyMessages counts the reply messages read by replies.
	replyMessages int
}

// rig configures a harness's consumer.
type rig struct {
	concurrency int
	shutdown    time.Duration // the consumer's ShutdownTimeout
	// brokenStore gives the consumer an idempotency store whose Redis client
	// is closed: every write of a result fails.
	brokenStore bool
	// amqpURL and redisURL name a vhost and Redis DB the test owns, shared
	// by its subtests; empty: the harness claims its own.
	amqpURL, redisURL string
}

// start starts a consumer on the vhost and Redis DB of env, emptied first.
func start(t *testing.T, env rig) *harness {
	r := rig{concurrency: 4, shutdown: 5 * time.Second, amqpURL: env.amqpURL, redisURL: env.redisURL}
	empty(t, r)
	return startRig(t, r)
}

// TestConsumer runs the consume loop on one vhost and Redis DB, emptied
// before each case.
func TestConsumer(t *testing.T) {
	env := rig{amqpURL: testenv.Vhost(t), redisURL: testenv.Redis(t)}
	for _, c := range []struct {
		name string
		run  func(t *testing.T, env rig)
	}{
		{"BadMessagesAreDeadLetteredAndTheWorkerGoesOn", badMessagesAreDeadLettered},
		{"EveryFinishedCommandIsAcked", everyFinishedCommandIsAcked},
		{"ASlowCommandDoesNotStallTheOthers", aSlowCommandDoesNotStallTheOthers},
		{"EveryOutcomeIsCarriedOutOnce", everyOutcomeIsCarriedOutOnce},
		{"ABatchsMembersSettleOnTheirOwn", batchMembersSettleOnTheirOwn},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, env) })
	}
}

func startRig(t *testing.T, r rig) *harness {
	t.Helper()
	url, redisURL := r.amqpURL, r.redisURL
	if url == "" {
		url, redisURL = testenv.Vhost(t), testenv.Redis(t)
	}
	opt, _ := redis.ParseURL(redisURL)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	reg := prometheus.NewRegistry()
	hs := &harness{h: &faultyHandler{seen: map[string]int{}, gate: make(chan struct{})}, m: NewMetrics(reg, r.concurrency),
		reg: reg, rdb: rdb, idem: idempotency.NewStore(rdb, time.Hour), log: &syncLog{}}
	hs.h.flaky.Store(3)
	store := hs.idem
	if r.brokenStore {
		broken := redis.NewClient(opt)
		broken.Close()
		store = idempotency.NewStore(broken, time.Hour)
	}
	c := New(Config{AMQPURL: url, Concurrency: r.concurrency, Prefetch: 8, ShutdownTimeout: r.shutdown}, hs.h,
		func(err error) bool { return errors.Is(err, errFlaky) }, store,
		slog.New(slog.NewJSONHandler(hs.log, nil)), hs.m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	hs.cancel = cancel
	hs.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(hs.stop)
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hs.ch, _ = conn.Channel()
	if err := amqpx.Declare(hs.ch); err != nil {
		t.Fatal(err)
	}
	if err := hs.ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	return hs
}

// publish publishes p and waits for the broker's confirm: p is in the queue.
func (hs *harness) publish(t *testing.T, p amqp.Publishing) {
	t.Helper()
	c, err := hs.ch.PublishWithDeferredConfirm(amqpx.Exchange, amqpx.RoutingKey, false, false, p)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.WaitContext(t.Context()); !ok || err != nil {
		t.Fatalf("publish not confirmed: %v", err)
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
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func command(method, rid string) protocol.Command {
	return protocol.Command{Method: method, Partner: 1, RequestID: rid, Params: []byte(`{"id":"O1"}`)}
}

func badMessagesAreDeadLettered(t *testing.T, env rig) {
	hs := start(t, env)
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

// publishMany publishes n getCustomer commands with request ids prefix-0...
func (hs *harness) publishMany(t *testing.T, prefix string, n int) {
	t.Helper()
	for i := range n {
		c := command(protocol.GetCustomer, fmt.Sprintf("%s-%d", prefix, i))
		hs.publish(t, c.Publishing("", ""))
	}
}

// afterStop stops the consumer and checks that nothing went back to the
// queue: every finished command was acked, none ran twice.
func (hs *harness) afterStop(t *testing.T) {
	t.Helper()
	hs.stop()
	// The broker returns a closed channel's unacked deliveries to the queue as
	// it removes the consumer.
	eventually(t, "the consumer gone", func() bool {
		q, err := hs.ch.QueueDeclarePassive(amqpx.Queue, true, false, false, false, nil)
		return err == nil && q.Consumers == 0
	})
	if n := hs.depth(t, amqpx.Queue); n != 0 {
		t.Errorf("%d commands back in the queue after the worker stopped: acks were lost", n)
	}
	hs.h.mu.Lock()
	defer hs.h.mu.Unlock()
	for id, n := range hs.h.seen {
		if n != 1 {
			t.Errorf("command %s ran %d times", id, n)
		}
	}
	if got := testutil.ToFloat64(hs.m.redeliveries); got != 0 {
		t.Errorf("%v redeliveries", got)
	}
}

// Acks are coalesced: every finished command must still be acked exactly once,
// including the last ones held when the worker stops. An odd count leaves one
// past the last full batch.
func everyFinishedCommandIsAcked(t *testing.T, env rig) {
	hs := start(t, env)
	hs.publishMany(t, "burst", 61)
	ok := hs.m.commands.WithLabelValues(protocol.GetCustomer, OutcomeOK)
	eventually(t, "61 commands done", func() bool { return testutil.ToFloat64(ok) == 61 })
	hs.afterStop(t)
}

// A slow command must not hold back the acks of the commands that finish after
// it: with a prefetch of 8, the broker would stop delivering after 8 unacked.
func aSlowCommandDoesNotStallTheOthers(t *testing.T, env rig) {
	hs := start(t, env)
	slow := command(protocol.UpdateOrder, "slow")
	hs.publish(t, slow.Publishing("", ""))
	eventually(t, "the slow command to start", func() bool {
		hs.h.mu.Lock()
		defer hs.h.mu.Unlock()
		return hs.h.seen["slow"] == 1
	})
	hs.publishMany(t, "quick", 30)
	ok := hs.m.commands.WithLabelValues(protocol.GetCustomer, OutcomeOK)
	eventually(t, "30 quick commands done while the slow one runs", func() bool { return testutil.ToFloat64(ok) == 30 })
	close(hs.h.gate)
	eventually(t, "the slow command done", func() bool {
		return testutil.ToFloat64(hs.m.commands.WithLabelValues(protocol.UpdateOrder, OutcomeOK)) == 1
	})
	hs.afterStop(t)
}
