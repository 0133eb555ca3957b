package partnerload

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The ledger check fails a call whose answer the ledger contradicts, and
// only those: it is the check that sees a 503 that took effect or a 200
// that ran twice.
func TestLedgerCheck(t *testing.T) {
	t0 := time.Now()
	call := func(rid, key string, status int, repeat bool) Call {
		return Call{Method: "createCustomer", RequestID: rid, Key: key, Status: status, Repeat: repeat, Start: t0}
	}
	tests := []struct {
		name  string
		calls []Call
		rows  map[string]ledgerRow
		fail  string // in the error, "" for none
	}{
		{"200 recorded once", []Call{call("r1", "k1", 200, false)}, map[string]ledgerRow{"r1": {1, 1, 200}}, ""},
		{"200 not recorded", []Call{call("r1", "k1", 200, false)}, nil, "r1 answered 200: 0 ledger rows holding its key"},
		{"200 recorded as 500", []Call{call("r1", "k1", 200, false)}, map[string]ledgerRow{"r1": {1, 1, 500}}, "recorded in the ledger as 500"},
		{"503 recorded", []Call{call("r1", "k1", 503, false)}, map[string]ledgerRow{"r1": {1, 1, 200}}, "r1 answered 503: 1 ledger rows"},
		{"503 recorded without its key", []Call{call("r1", "k1", 503, false)}, map[string]ledgerRow{"r1": {1, 0, 200}}, "r1 answered 503: 1 ledger rows"},
		{"503 not recorded", []Call{call("r1", "k1", 503, false)}, nil, ""},
		{"202 run under its repeat after Redis lost the record", []Call{call("r1", "k1", 202, false), call("r2", "k1", 200, true)},
			map[string]ledgerRow{"r2": {1, 1, 200}}, ""},
		{"202 run, its repeat answered from its row", []Call{call("r1", "k1", 202, false), call("r2", "k1", 200, true)},
			map[string]ledgerRow{"r1": {1, 1, 200}, "r2": {1, 0, 200}}, ""},
		{"202 run twice", []Call{call("r1", "k1", 202, false), call("r2", "k1", 200, true)},
			map[string]ledgerRow{"r1": {1, 1, 200}, "r2": {1, 1, 200}}, "r1 answered 202: 2 ledger rows holding its key"},
		{"202 recorded only as a replay", []Call{call("r1", "k1", 202, false), call("r2", "k1", 200, true)},
			map[string]ledgerRow{"r2": {1, 0, 200}}, "r1 answered 202: 0 ledger rows holding its key"},
		{"unkeyed 202 not run", []Call{call("r1", "", 202, false)}, nil, "r1 answered 202: 0 ledger rows"},
		{"unkeyed 200 run twice", []Call{call("r1", "", 200, false)}, map[string]ledgerRow{"r1": {2, 0, 200}}, "r1 answered 200: 2 ledger rows"},
		{"read not recorded", []Call{{Method: "getOrder", RequestID: "r1", Status: 200, Start: t0}}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &checker{marks: []Mark{{"steady", t0}}, res: &Checked{ByPhase: map[string]int{}}, ledgerRows: map[ref]ledgerRow{}}
			for rid, row := range tt.rows {
				c.ledgerRows[ref{0, rid}] = row
			}
			c.ledger(context.Background(), tt.calls)
			switch {
			case tt.fail == "" && len(c.errs) > 0:
				t.Fatalf("failed: %v", c.errs)
			case tt.fail != "" && (len(c.errs) != 1 || !strings.Contains(c.errs[0].Error(), tt.fail)):
				t.Fatalf("errors %v, want one with %q", c.errs, tt.fail)
			}
		})
	}
}
