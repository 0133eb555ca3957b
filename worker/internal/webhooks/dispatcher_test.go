package webhooks

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/testenv"
	"github.com/oneoffice/provisioner/shared/webhook"
)

// Several dispatchers side by side deliver each event once, and the events
// of one order in the order they were made.
func TestDispatchersSideBySideDeliverEachEventOnceInOrder(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.Database(t)
	db, err := store.Open(ctx, dbURL, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string][]string{} // order id -> request ids, as received
	ids := map[string]int{}      // webhook-id -> deliveries
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var e struct{ RequestID, OrderID string }
		_ = json.Unmarshal(body, &e)
		mu.Lock()
		got[e.OrderID] = append(got[e.OrderID], e.RequestID)
		ids[r.Header.Get(webhook.HeaderID)]++
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)

	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	sealer, err := webhook.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	var partner int64
	if err := db.QueryRow(ctx, `INSERT INTO partners (name) VALUES ('P') RETURNING id`).Scan(&partner); err != nil {
		t.Fatal(err)
	}
	secret, _ := webhook.NewSecret()
	sealed, _ := sealer.Seal(partner, secret)
	if _, err := db.Exec(ctx, `INSERT INTO webhook_endpoints (partner_id, url, secret_sealed) VALUES ($1, $2, $3)`,
		partner, srv.URL, sealed); err != nil {
		t.Fatal(err)
	}
	const orders, perOrder = 10, 8
	for i := range perOrder {
		for o := range orders {
			if _, err := db.Exec(ctx, `INSERT INTO command_ledger (partner_id, command_id, method, request_fp,
				request_id, status, response_status, response_body, created_at, order_id)
				VALUES ($1, $2, 'suspendOrder', 'fp', $2, 'succeeded', 200, '{}', now(), $3)`,
				partner, fmt.Sprintf("O%d-%d", o, i), fmt.Sprintf("O%d", o)); err != nil {
				t.Fatal(err)
			}
		}
	}

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var last *Dispatcher
	for range 3 {
		d := New(db, sealer, Config{DatabaseURL: dbURL, Timeout: 2 * time.Second, Concurrency: 4, EndpointConcurrency: 3,
			Schedule:     Schedule{Min: 50 * time.Millisecond, Max: 100 * time.Millisecond, For: time.Hour},
			PollInterval: 50 * time.Millisecond, Policy: webhook.Policy{AllowHosts: []string{"127.0.0.1"}}},
			slog.New(slog.DiscardHandler), m)
		wg.Go(func() { d.Run(runCtx) })
		last = d
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var pending int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM webhook_events WHERE status <> 'delivered'`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events undelivered after a minute", pending)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(ids) != orders*perOrder {
		t.Fatalf("%d distinct webhook-ids delivered, want %d", len(ids), orders*perOrder)
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	for o := range orders {
		order := fmt.Sprintf("O%d", o)
		for i, req := range got[order] {
			if want := fmt.Sprintf("%s-%d", order, i); req != want {
				t.Fatalf("order %s: events arrived as %v, want them in the order made", order, got[order])
			}
		}
	}
	if n := testutil.ToFloat64(m.deliveries.WithLabelValues(outcomeDelivered)); n != orders*perOrder {
		t.Fatalf("oneoffice_webhook_deliveries_total{outcome=delivered} = %v, want %d", n, orders*perOrder)
	}

	// Delivered events are kept for the retention, then pruned.
	if n, err := last.pruneOnce(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("pruned %d fresh events (%v)", n, err)
	}
	if n, err := last.pruneOnce(ctx, time.Now().Add(time.Hour)); err != nil || n != orders*perOrder {
		t.Fatalf("pruned %d (%v), want %d", n, err, orders*perOrder)
	}
}

// Every attempt is recorded for listEvents: its time, the endpoint's status
// (none when no answer came) and why it failed; and the attempts go with
// their event when it is pruned.
func TestEveryAttemptIsRecorded(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.Database(t)
	db, err := store.Open(ctx, dbURL, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if n++; n <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	sealer, _ := webhook.NewSealer(base64.StdEncoding.EncodeToString(make([]byte, 32)))
	var partner int64
	if err := db.QueryRow(ctx, `INSERT INTO partners (name) VALUES ('P') RETURNING id`).Scan(&partner); err != nil {
		t.Fatal(err)
	}
	secret, _ := webhook.NewSecret()
	sealed, _ := sealer.Seal(partner, secret)
	if _, err := db.Exec(ctx, `INSERT INTO webhook_endpoints (partner_id, url, secret_sealed) VALUES ($1, $2, $3)`,
		partner, srv.URL, sealed); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO command_ledger (partner_id, command_id, method, request_fp,
		request_id, status, response_status, response_body, created_at) VALUES ($1, 'c1', 'deleteUser', 'fp',
		'req-1', 'succeeded', 200, '{}', now())`, partner); err != nil {
		t.Fatal(err)
	}
	var requestID string
	if err := db.QueryRow(ctx, `SELECT request_id FROM webhook_events`).Scan(&requestID); err != nil || requestID != "req-1" {
		t.Fatalf("the event's request id %q (%v), want req-1", requestID, err)
	}
	d := New(db, sealer, Config{DatabaseURL: dbURL, Timeout: 2 * time.Second,
		Schedule:     Schedule{Min: 20 * time.Millisecond, Max: 20 * time.Millisecond, For: time.Hour},
		PollInterval: 20 * time.Millisecond, Policy: webhook.Policy{AllowHosts: []string{"127.0.0.1"}}},
		slog.New(slog.DiscardHandler), NewMetrics(prometheus.NewRegistry()))
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(runCtx) })
	deadline := time.Now().Add(time.Minute)
	for {
		var status string
		if err := db.QueryRow(ctx, `SELECT status FROM webhook_events`).Scan(&status); err != nil {
			t.Fatal(err)
		}
		if status == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event is not delivered after a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	wg.Wait()
	rows, err := db.Query(ctx, `SELECT coalesce(status, 0), coalesce(error, ''), duration_ms FROM webhook_attempts ORDER BY at, id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var st, ms int
		var reason string
		if err := rows.Scan(&st, &reason, &ms); err != nil {
			t.Fatal(err)
		}
		if ms < 0 {
			t.Fatalf("duration %d ms", ms)
		}
		got = append(got, fmt.Sprintf("%d %s", st, reason))
	}
	if want := []string{"500 Internal Server Error", "500 Internal Server Error", "200 "}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("attempts %q, want %q", got, want)
	}
	// An endpoint that cannot be reached: an attempt with no status and
	// the reason.
	srv.Close()
	if _, err := db.Exec(ctx, `UPDATE webhook_events SET status = 'pending', next_attempt_at = now()`); err != nil {
		t.Fatal(err)
	}
	events, err := d.claim(ctx, 1, []int64{})
	if err != nil || len(events) != 1 {
		t.Fatalf("claim: %v, %v", events, err)
	}
	d.mu.Lock() // as dispatch does before a delivery
	d.busy[partner]++
	d.n++
	d.wg.Add(1)
	d.mu.Unlock()
	d.deliver(events[0])
	var reason string
	if err := db.QueryRow(ctx, `SELECT error FROM webhook_attempts WHERE status IS NULL`).Scan(&reason); err != nil || reason == "" {
		t.Fatalf("the unreachable attempt: %q, %v", reason, err)
	}
	if _, err := db.Exec(ctx, `UPDATE webhook_events SET status = 'failed'`); err != nil {
		t.Fatal(err)
	}
	if n, err := d.pruneOnce(ctx, time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("pruned %d (%v)", n, err)
	}
	var left int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM webhook_attempts`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d attempts left after their event was pruned (%v)", left, err)
	}
}

// A replay while an attempt is in flight is not lost: that attempt's
// outcome does not settle the event, which is taken and sent again.
func TestReplayDuringAnAttemptIsSentAfterIt(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.Database(t)
	db, err := store.Open(ctx, dbURL, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	var partner int64
	if err := db.QueryRow(ctx, `INSERT INTO partners (name) VALUES ('P') RETURNING id`).Scan(&partner); err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO webhook_endpoints (partner_id, url, secret_sealed) VALUES ($1, 'http://127.0.0.1:1/', '\x00')`, partner)
	exec(`INSERT INTO webhook_events (partner_id, event_type, body, occurred_at) VALUES ($1, 'command.succeeded', '{}', now())`, partner)
	d := New(db, nil, Config{DatabaseURL: dbURL, Schedule: Schedule{Min: time.Hour, Max: time.Hour, For: time.Hour}},
		slog.New(slog.DiscardHandler), NewMetrics(prometheus.NewRegistry()))
	status := func() string {
		var s string
		if err := db.QueryRow(ctx, `SELECT status FROM webhook_events`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, outcome := range []struct {
		name   string
		settle func(e event) error
	}{
		{"delivered", func(e event) error { return d.delivered(ctx, e, 200) }},
		{"retried", func(e event) error { return d.retry(ctx, e, 500, "Internal Server Error", time.Now().Add(time.Hour)) }},
		{"failed", func(e event) error { return d.retry(ctx, e, 500, "Internal Server Error", time.Time{}) }},
	} {
		exec(`UPDATE webhook_events SET status = 'pending', next_attempt_at = now()`)
		inFlight, err := d.claim(ctx, 1, []int64{})
		if err != nil || len(inFlight) != 1 {
			t.Fatalf("%s: claim %v, %v", outcome.name, inFlight, err)
		}
		// replayEvent's update, as provision/events.go makes it.
		exec(`UPDATE webhook_events SET next_attempt_at = now(), replays = replays + 1`)
		if err := outcome.settle(inFlight[0]); err != nil {
			t.Fatal(err)
		}
		again, err := d.claim(ctx, 1, []int64{})
		if st := status(); st != "pending" || err != nil || len(again) != 1 || again[0].replays != inFlight[0].replays+1 {
			t.Fatalf("%s during a replay: the event is %s, taken again %v (%v); want pending and taken again", outcome.name, st, again, err)
		}
		if err := outcome.settle(again[0]); err != nil {
			t.Fatal(err)
		}
		if st, want := status(), map[string]string{"delivered": "delivered", "retried": "pending", "failed": "failed"}[outcome.name]; st != want {
			t.Fatalf("%s after the replay's attempt: %s, want %s", outcome.name, st, want)
		}
	}
}
