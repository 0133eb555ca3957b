package provision

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// outboxEvent is a webhook event as the ledger's trigger wrote it.
type outboxEvent struct {
	Type      string `json:"type"`
	RequestID string `json:"requestId"`
	Method    string `json:"method"`
	OrderID   string `json:"orderId"`
	Response  struct {
		Status int            `json:"status"`
		Body   map[string]any `json:"body"`
	} `json:"response"`
	OccurredAt int64 `json:"occurredAt"`
}

func (f *fixture) outbox(t *testing.T, partner int64) []outboxEvent {
	t.Helper()
	rows, err := f.db.Query(context.Background(), `SELECT body, order_id IS NOT DISTINCT FROM (body::jsonb->>'orderId')
		FROM webhook_events WHERE partner_id = $1 ORDER BY id`, partner)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxEvent
	for rows.Next() {
		var body string
		var orderAgrees bool
		if err := rows.Scan(&body, &orderAgrees); err != nil {
			t.Fatal(err)
		}
		var e outboxEvent
		if err := json.Unmarshal([]byte(body), &e); err != nil || !orderAgrees {
			t.Fatalf("event %s: %v (order column agrees: %v)", body, err, orderAgrees)
		}
		out = append(out, e)
	}
	return out
}

// Every path that records a command writes its event in the same
// transaction: the handler's, createCustomer's batched insert, a refusal
// on its own, a permanent failure; only for a partner with an enabled
// endpoint, and never for a read or a rolled-back effect.
func TestLedgerRowsMakeWebhookEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.db.Exec(ctx, `INSERT INTO webhook_endpoints (partner_id, url, secret_sealed)
		VALUES ($1, 'https://hooks.example.com/', '\x00')`, f.partner); err != nil {
		t.Fatal(err)
	}
	other := f.newPartner(t, "no webhooks")
	f.run(t, "cmd-1", protocol.CreateCustomer, m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}})
	f.run(t, "cmd-2", protocol.CreateFirstOrder, m{"customer": "C1", "id": "O1", "product": "oo-std", "licenses": 5, "duration": "monthly"})
	f.run(t, "cmd-3", protocol.GetOrder, m{"id": "O1"})
	f.run(t, "cmd-4", protocol.CreateRenewalOrder, m{"parent": "O1", "id": "R1"}) // too early: 422
	f.run(t, "cmd-5", protocol.CancelOrder, m{"id": "NOPE"})                      // 404
	f.run(t, "cmd-2", protocol.CreateFirstOrder, m{"customer": "C1", "id": "O1", "product": "oo-std", "licenses": 5, "duration": "monthly"})
	raw, _ := json.Marshal(m{"id": "O1"})
	if err := f.svc.Failed(ctx, &protocol.Command{CommandID: "cmd-6", Method: protocol.SuspendOrder, Partner: f.partner,
		RequestID: "r-cmd-6", Params: raw}, protocol.Result{Status: 500, Body: []byte(`{"error":{"code":"internal"}}`)}); err != nil {
		t.Fatal(err)
	}
	otherCmd := &protocol.Command{CommandID: "cmd-7", Method: protocol.CreateCustomer, Partner: other, RequestID: "r-cmd-7",
		Params: []byte(`{"id":"C1","name":"C1","admin":{"email":"a@example.com"}}`)}
	if _, err := f.svc.Handle(ctx, otherCmd); err != nil {
		t.Fatal(err)
	}

	got := f.outbox(t, f.partner)
	want := []struct {
		typ, request, method, order string
		status                      int
	}{
		{"command.succeeded", "r-cmd-1", protocol.CreateCustomer, "", 200},
		{"command.succeeded", "r-cmd-2", protocol.CreateFirstOrder, "O1", 200},
		{"command.succeeded", "r-cmd-4", protocol.CreateRenewalOrder, "O1", 422},
		{"command.succeeded", "r-cmd-5", protocol.CancelOrder, "NOPE", 404},
		{"command.failed", "r-cmd-6", protocol.SuspendOrder, "O1", 500},
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Type != w.typ || g.RequestID != w.request || g.Method != w.method || g.OrderID != w.order ||
			g.Response.Status != w.status || g.Response.Body == nil || g.OccurredAt == 0 {
			t.Errorf("event %d: %+v, want %+v", i, g, w)
		}
	}
	if got[1].Response.Body["id"] != "O1" {
		t.Errorf("createFirstOrder's event carries %v, want the order", got[1].Response.Body)
	}
	if n := len(f.outbox(t, other)); n != 0 {
		t.Fatalf("%d events of a partner without an endpoint", n)
	}

	// A disabled endpoint gets no events.
	if _, err := f.db.Exec(ctx, `UPDATE webhook_endpoints SET enabled = false`); err != nil {
		t.Fatal(err)
	}
	f.run(t, "cmd-8", protocol.CreateCustomer, m{"id": "C2", "name": "C2", "admin": m{"email": "a@example.com"}})
	if n := len(f.outbox(t, f.partner)); n != len(want) {
		t.Fatalf("%d events after the endpoint was disabled, want %d", n, len(want))
	}
}
