package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/oneoffice/provisioner/shared/protocol"
)

func (f *fixture) run(t *testing.T, commandID, method string, params any) protocol.Result {
	t.Helper()
	raw, _ := json.Marshal(params)
	res, err := f.svc.Handle(context.Background(), &protocol.Command{CommandID: commandID, Method: method,
		Partner: f.partner, RequestID: "r-" + commandID, Params: raw, Timestamp: f.clock})
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return res
}

// The shared createCustomer statement records its command with the bytes it
// answers, and the same command again is answered from the row.
func TestLedgerRecordsBatchedCreateCustomer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	params := m{"id": "C1", "name": "C1 <&>", "admin": m{"email": "a@example.com", "phone": "+36"}}
	first := f.run(t, "cmd-1", protocol.CreateCustomer, params)
	var body []byte
	var status int
	if err := f.db.QueryRow(context.Background(), `SELECT response_status, response_body FROM command_ledger
		WHERE partner_id = $1 AND command_id = 'cmd-1'`, f.partner).Scan(&status, &body); err != nil {
		t.Fatal(err)
	}
	if status != 200 || !bytes.Equal(body, first.Body) {
		t.Fatalf("ledger %d %s, answered %d %s", status, body, first.Status, first.Body)
	}
	again := f.run(t, "cmd-1", protocol.CreateCustomer, params)
	if !bytes.Equal(again.Body, first.Body) || again.Replayed {
		t.Fatalf("redelivery: %s, want %s", again.Body, first.Body)
	}
	var rows, counter int
	f.db.QueryRow(context.Background(), `SELECT count(*) FROM command_ledger`).Scan(&rows)
	f.db.QueryRow(context.Background(), `SELECT last_customer_number FROM partner_counters`).Scan(&counter)
	if rows != 1 || counter > 2 {
		t.Fatalf("%d ledger rows, counter %d", rows, counter)
	}
}

// Reads write no row; rows past the retention are pruned.
func TestLedgerReadsAndPruning(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.run(t, "cmd-1", protocol.CreateCustomer, m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}})
	f.run(t, "cmd-2", protocol.GetCustomer, m{"id": "C1"})
	ctx := context.Background()
	var rows int
	f.db.QueryRow(ctx, `SELECT count(*) FROM command_ledger`).Scan(&rows)
	if rows != 1 {
		t.Fatalf("%d ledger rows, want the create's only", rows)
	}
	if n, err := f.svc.pruneLedger(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("pruned %d fresh rows (%v)", n, err)
	}
	if n, err := f.svc.pruneLedger(ctx, time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("pruned %d (%v), want 1", n, err)
	}
}
