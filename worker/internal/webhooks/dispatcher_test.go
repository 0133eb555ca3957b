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
