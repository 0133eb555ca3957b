package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
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
	f.handleOn(f.svc, wg, out, partner, params)
}

// handleOn runs a createCustomer on svc, one of the workers sharing the database.
func (f *fixture) handleOn(svc *Service, wg *sync.WaitGroup, out *result, partner int64, params any) {
	raw, _ := json.Marshal(params)
	wg.Go(func() {
		res, err := svc.Handle(context.Background(), &protocol.Command{
			Method: protocol.CreateCustomer, Partner: partner, RequestID: "r", Params: raw})
		out.status, out.err = res.Status, err
		if err == nil {
			out.err = json.Unmarshal(res.Body, &out.body)
		}
	})
}

// holdLane fills the inserter's only lane (see holdLanes).
func (f *fixture) holdLane(t *testing.T) func() { return f.holdLanes(t, f.svc) }

// holdLanes fills the only lane of each service's inserter: an open
// transaction holds the partner's customer counter, and a createCustomer of
// the partner on each service waits for it inside its statement. The returned
// function ends the transaction and waits for those commands.
func (f *fixture) holdLanes(t *testing.T, svcs ...*Service) func() {
	t.Helper()
	ctx := context.Background()
	tx, err := f.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO partner_counters (partner_id, last_customer_number) VALUES ($1, 0)
		ON CONFLICT (partner_id) DO UPDATE SET last_customer_number = partner_counters.last_customer_number`, f.partner); err != nil {
		tx.Rollback(ctx) // else closing the pool waits for its connection
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	blockers := make([]result, len(svcs))
	for i, svc := range svcs {
		svc.customers.lanes = 1
		f.handleOn(svc, &wg, &blockers[i], f.partner,
			m{"id": fmt.Sprintf("blocker-%d", i), "name": "B", "admin": m{"email": "b@example.com"}})
	}
	f.waitFor(t, "the blockers' statements to wait for the open transaction", func() bool {
		var waiting int
		err := f.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting == len(svcs)
	})
	return func() {
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i, r := range blockers {
			if r.err != nil || r.status != 200 {
				t.Fatalf("blocker %d: status %d, error %v", i, r.status, r.err)
			}
		}
	}
}

func (f *fixture) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// statements returns the insert statements run and their rows.
func (in *inserter) statements(t testing.TB) (statements, rows int) {
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
	return f.column(t, f.partner, "name")
}

// column returns a text column of the partner's customers by id.
func (f *fixture) column(t *testing.T, partner int64, col string) map[string]string {
	t.Helper()
	rows, err := f.db.Query(context.Background(), `SELECT remote_id, `+col+`::text FROM tenants
		WHERE partner_id = $1 AND kind = 'customer'`, partner)
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

// Two workers insert the customers of three partners at once, in one batch
// statement each, with some calls sent to both: each partner's customers are
// numbered 1, 2, 3... whatever the others do, every answer carries the number
// stored, the same call on both workers gets one customer, and only the calls
// sent twice leave gaps, in their own partner's numbers.
func TestConcurrentBatchesNumberEachPartnerApart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := New(f.db, Config{StorageRoot: f.root, RenewalWindow: f.svc.cfg.RenewalWindow}, NewMetrics(prometheus.NewRegistry()))
	svcs := []*Service{f.svc, other}
	partners := []int64{f.partner, f.newPartner(t, "Q"), f.newPartner(t, "R")}
	release := f.holdLanes(t, svcs...)

	const perPartner = 25
	type call struct {
		partner int64
		params  m
		res     result
	}
	var calls []*call
	queued := []int{0, 0}
	var wg sync.WaitGroup
	for pi, p := range partners {
		for i := range perPartner {
			params := m{"id": fmt.Sprintf("C%02d", i), "name": fmt.Sprintf("Company %d", i), "admin": m{"email": "a@example.com"}}
			to := []int{i % 2}
			if pi < 2 && i%5 == 0 { // the last partner's calls each go to one worker only
				to = []int{0, 1}
			}
			for _, w := range to {
				c := &call{partner: p, params: params}
				calls = append(calls, c)
				queued[w]++
				f.handleOn(svcs[w], &wg, &c.res, p, params)
			}
		}
	}
	f.waitFor(t, "every command to queue", func() bool {
		return f.svc.customers.queued() == queued[0] && other.customers.queued() == queued[1]
	})
	release()
	wg.Wait()

	for w, svc := range svcs {
		if s, r := svc.customers.statements(t); s != 2 || r != queued[w]+1 {
			t.Errorf("worker %d: %d statements for %d rows, want 2 for %d (its blocker, then one for the queue)", w, s, r, queued[w]+1)
		}
	}
	stored := map[int64]map[string]string{}
	for _, p := range partners {
		stored[p] = f.column(t, p, "customer_number")
	}
	for _, c := range calls {
		id := c.params["id"].(string)
		if c.res.err != nil || c.res.status != 200 || c.res.body["remoteId"] != id {
			t.Fatalf("partner %d %s: status %d, error %v, body %v", c.partner, id, c.res.status, c.res.err, c.res.body)
		}
		if got := fmt.Sprint(c.res.body["id"]); got != stored[c.partner][id] {
			t.Errorf("partner %d %s answered id %s, stored %s", c.partner, id, got, stored[c.partner][id])
		}
	}
	for pi, p := range partners {
		numbers := map[string]bool{}
		for _, n := range stored[p] {
			if numbers[n] {
				t.Errorf("partner %d: number %s twice", p, n)
			}
			numbers[n] = true
		}
		races := 0
		if pi < 2 {
			races = perPartner / 5
		}
		want := perPartner
		if p == f.partner {
			want += 2 // the blockers
		}
		if len(stored[p]) != want {
			t.Errorf("partner %d: %d customers, want %d", p, len(stored[p]), want)
		}
		for n := 1; n <= want; n++ {
			if !numbers[fmt.Sprint(n)] && races == 0 {
				t.Errorf("partner %d: number %d missing, and no call of it raced: %v", p, n, stored[p])
			}
		}
		var last int
		f.db.QueryRow(context.Background(), `SELECT last_customer_number FROM partner_counters WHERE partner_id = $1`, p).Scan(&last)
		t.Logf("partner %d: %d customers numbered up to %d (%d calls raced)", p, want, last, races)
		if last < want || last > want+races {
			t.Errorf("partner %d: counter at %d for %d customers and %d racing calls", p, last, want, races)
		}
	}
}

// BenchmarkConcurrentCreates runs createCustomer commands 32 at a time on
// each of two workers sharing the database, for one partner (every statement
// takes the same counter row, and the two workers' statements wait for each
// other) or spread over 16 partners, and reports the rows each insert
// statement carried.
func BenchmarkConcurrentCreates(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("partners=%d", n), func(b *testing.B) {
			f := newFixture(b)
			svcs := []*Service{f.svc, New(f.db, Config{StorageRoot: f.root}, NewMetrics(prometheus.NewRegistry()))}
			partners := []int64{f.partner}
			for i := 1; i < n; i++ {
				partners = append(partners, f.newPartner(b, fmt.Sprintf("P%d", i)))
			}
			const slots = 32
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for s := range 2 * slots {
				wg.Go(func() {
					svc, partner := svcs[s%2], partners[s%len(partners)]
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						raw := fmt.Appendf(nil, `{"id":"C%d","name":"N","admin":{"email":"a@example.com"}}`, i)
						res, err := svc.Handle(context.Background(), &protocol.Command{
							Method: protocol.CreateCustomer, Partner: partner, RequestID: "r", Params: raw})
						if err != nil || res.Status != 200 {
							b.Errorf("create %d: %d %v", i, res.Status, err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			statements, rows := 0, 0
			for _, svc := range svcs {
				s, r := svc.customers.statements(b)
				statements, rows = statements+s, rows+r
			}
			b.ReportMetric(float64(rows)/float64(statements), "rows/statement")
		})
	}
}
