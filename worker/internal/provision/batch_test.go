package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// result is one command's answer, or its failure.
type result struct {
	status int
	body   map[string]any
	err    error
}

// handle runs a createCustomer for partner in its own goroutine.
func (f *fixture) handle(wg *sync.WaitGroup, out *result, partner int64, params any) {
	raw, _ := json.Marshal(params)
	wg.Go(func() {
		res, err := f.svc.Handle(context.Background(), &protocol.Command{
			Method: protocol.CreateCustomer, Partner: partner, RequestID: "r", Params: raw})
		out.status, out.err = res.Status, err
		if err == nil {
			out.err = json.Unmarshal(res.Body, &out.body)
		}
	})
}

// holdLane fills the inserter's only lane: an open transaction holds the id
// "blocker", and a createCustomer of that id waits for it inside its statement.
// The returned function ends the transaction and waits for that command.
func (f *fixture) holdLane(t *testing.T) func() {
	t.Helper()
	f.svc.customers.lanes = 1
	ctx := context.Background()
	tx, err := f.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO tenants (partner_id, kind, remote_id, name, admin_email, storage_path)
		VALUES ($1, 'customer', 'blocker', 'B', 'b@example.com', 'x')`, f.partner); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var r result
	f.handle(&wg, &r, f.partner, m{"id": "blocker", "name": "B", "admin": m{"email": "b@example.com"}})
	f.waitFor(t, "the blocker's statement to wait for the open transaction", func() bool {
		var waiting bool
		err := f.db.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting
	})
	return func() {
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if r.err != nil || r.status != 200 {
			t.Fatalf("blocker: status %d, error %v", r.status, r.err)
		}
	}
}

func (f *fixture) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// statements returns the insert statements run and their rows.
func (in *inserter) statements(t *testing.T) (statements, rows int) {
	t.Helper()
	var m dto.Metric
	if err := in.rows.Write(&m); err != nil {
		t.Fatal(err)
	}
	return int(m.GetHistogram().GetSampleCount()), int(m.GetHistogram().GetSampleSum())
}

func (in *inserter) queued() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.queue)
}

func (f *fixture) tenants(t *testing.T) map[string]string {
	t.Helper()
	rows, err := f.db.Query(context.Background(), `SELECT remote_id, name FROM tenants WHERE partner_id = $1`, f.partner)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var v [2]string
		return v, r.Scan(&v[0], &v[1])
	})
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]string, len(names))
	for _, v := range names {
		got[v[0]] = v[1]
	}
	return got
}

// Commands that reach the insert while a statement runs share the next one,
// and each gets its own answer: its row, the existing customer for the same
// call twice, 409 for the same id with other params.
func TestConcurrentCreatesShareOneStatement(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	release := f.holdLane(t)

	const distinct = 20
	calls := make([]m, 0, distinct+4)
	for i := range distinct {
		calls = append(calls, m{"id": fmt.Sprintf("C%02d", i), "name": fmt.Sprintf("Company %d", i),
			"admin": m{"email": fmt.Sprintf("a%d@example.com", i), "phone": "+3612345678"}})
	}
	same := m{"id": "SAME", "name": "Same", "admin": m{"email": "s@example.com"}}
	calls = append(calls, same, same,
		m{"id": "CLASH", "name": "First", "admin": m{"email": "c@example.com"}},
		m{"id": "CLASH", "name": "Second", "admin": m{"email": "c@example.com"}})
	results := make([]result, len(calls))
	var wg sync.WaitGroup
	for i, p := range calls {
		f.handle(&wg, &results[i], f.partner, p)
	}
	f.waitFor(t, "every command to queue", func() bool { return f.svc.customers.queued() == len(calls) })
	release()
	wg.Wait()

	if s, r := f.svc.customers.statements(t); s != 2 || r != len(calls)+1 {
		t.Errorf("%d statements for %d rows, want 2 for %d (the blocker, then one for the queue)", s, r, len(calls)+1)
	}
	for i := range distinct {
		r := results[i]
		if r.err != nil || r.status != 200 || r.body["remoteId"] != calls[i]["id"] || r.body["name"] != calls[i]["name"] ||
			r.body["admin"].(m)["phone"] != "+3612345678" {
			t.Errorf("call %d: status %d, error %v, body %v", i, r.status, r.err, r.body)
		}
	}
	a, b := results[distinct], results[distinct+1]
	if a.status != 200 || b.status != 200 || a.body["id"] != b.body["id"] {
		t.Errorf("the same call twice: %d %v and %d %v, want one customer twice", a.status, a.body, b.status, b.body)
	}
	c1, c2 := results[distinct+2], results[distinct+3]
	if c1.status+c2.status != 200+409 {
		t.Errorf("one id with two params: %d %v and %d %v, want one 200 and one 409", c1.status, c1.body, c2.status, c2.body)
	}
	got := f.tenants(t)
	if len(got) != distinct+3 {
		t.Errorf("%d tenant rows, want %d: %v", len(got), distinct+3, got)
	}
	winner := c1
	if c2.status == 200 {
		winner = c2
	}
	if got["CLASH"] != winner.body["name"] {
		t.Errorf("CLASH stored as %q, answered %v", got["CLASH"], winner.body["name"])
	}
}

// A row the database refuses fails its statement; the other commands of that
// statement then run alone and succeed, and the refused one fails alone.
func TestABadRowDoesNotFailItsBatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	release := f.holdLane(t)

	results := make([]result, 6)
	var wg sync.WaitGroup
	for i := range 5 {
		f.handle(&wg, &results[i], f.partner, m{"id": fmt.Sprintf("OK%d", i), "name": "Fine", "admin": m{"email": "f@example.com"}})
	}
	// No such partner: the foreign key refuses the row.
	f.handle(&wg, &results[5], f.partner+1000, m{"id": "ORPHAN", "name": "Orphan", "admin": m{"email": "o@example.com"}})
	f.waitFor(t, "every command to queue", func() bool { return f.svc.customers.queued() == 6 })
	release()
	wg.Wait()

	if s, _ := f.svc.customers.statements(t); s != 2 {
		t.Errorf("%d statements, want 2", s)
	}
	for i, r := range results[:5] {
		if r.err != nil || r.status != 200 || r.body["remoteId"] != fmt.Sprintf("OK%d", i) {
			t.Errorf("call %d: status %d, error %v, body %v", i, r.status, r.err, r.body)
		}
	}
	if r := results[5]; r.err == nil || IsTransient(r.err) {
		t.Errorf("orphan: status %d, error %v, want a permanent failure", r.status, r.err)
	}
	if got := f.tenants(t); len(got) != 6 {
		t.Errorf("tenant rows %v, want blocker and OK0 to OK4", got)
	}
}
