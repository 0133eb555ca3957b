package provision

import (
	"context"
	"testing"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// TestQueuedReadsAreAnsweredByTheSharedReads: a read that arrives on the
// queue (from a gateway of an earlier release, which sent every read there)
// is answered by shared/reads, as the gateway answers it, and recorded in no
// ledger row.
func TestQueuedReadsAreAnsweredByTheSharedReads(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.want(protocol.CreateCustomer, m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}, 200)
	for _, id := range []string{"O1", "O2"} {
		f.want(protocol.CreateFirstOrder, m{"customer": "C1", "id": id, "product": "oo-std", "licenses": 5, "duration": "monthly"}, 200)
	}
	page := f.want("listOrders", m{"limit": 1}, 200)
	if d := page["data"].([]any); len(d) != 1 || d[0].(m)["id"] != "O1" || page["nextCursor"] == nil {
		t.Fatalf("listOrders %v", page)
	}
	next := f.want("listOrders", m{"limit": 1, "cursor": page["nextCursor"]}, 200)
	if d := next["data"].([]any); len(d) != 1 || d[0].(m)["id"] != "O2" || next["nextCursor"] != nil {
		t.Fatalf("listOrders, page 2 %v", next)
	}
	if b := f.want("listOrders", m{"status": "cancelled", "cursor": page["nextCursor"]}, 400); errCode(b) != "invalid_params" {
		t.Fatalf("a cursor with other filters %v", b)
	}
	if g := f.want("getOrders", m{"ids": []string{"O2", "X"}}, 200); len(g["data"].([]any)) != 1 || g["missing"].([]any)[0] != "X" {
		t.Fatalf("getOrders %v", g)
	}
	if o := f.want(protocol.GetOrder, m{"id": "O1"}, 200); o["id"] != "O1" {
		t.Fatalf("getOrder %v", o)
	}
	var n int
	if err := f.db.QueryRow(context.Background(), `SELECT count(*) FROM command_ledger
		WHERE method IN ('listOrders', 'getOrders', 'getOrder')`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d reads in the ledger (%v)", n, err)
	}
}
