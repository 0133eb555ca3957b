package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// queued is the number of commands waiting for a group.
func (g *grouper) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

// groups returns the transactions run and the commands in them.
func (g *grouper) groups(t testing.TB) (groups, commands int) {
	t.Helper()
	var m dto.Metric
	if err := g.size.Write(&m); err != nil {
		t.Fatal(err)
	}
	return int(m.GetHistogram().GetSampleCount()), int(m.GetHistogram().GetSampleSum())
}

// groupCall is one command handed to a group and what it got.
type groupCall struct {
	id, method string
	params     any
	res        protocol.Result
	err        error
	panicked   any
}

// inOneGroup runs the calls in one group: every lane is held, the calls
// queue in the order given, and one lane is handed to the first of them,
// which leads the group. Nothing here waits on a clock: a command runs only
// when a lane is free or handed to it.
func (f *fixture) inOneGroup(t *testing.T, calls []*groupCall) {
	t.Helper()
	g := f.svc.group
	g.mu.Lock()
	held := g.lanes - g.running
	g.running = g.lanes
	g.mu.Unlock()
	var wg sync.WaitGroup
	for i, c := range calls {
		raw, _ := json.Marshal(c.params)
		cmd := &protocol.Command{CommandID: c.id, Method: c.method, Partner: f.partner, RequestID: "r-" + c.id,
			Params: raw, Timestamp: f.clock}
		wg.Go(func() {
			defer func() { c.panicked = recover() }()
			c.res, c.err = f.svc.Handle(context.Background(), cmd)
		})
		f.waitFor(t, "the command to queue", func() bool { return g.queued() == i+1 })
	}
	before, _ := g.groups(t)
	g.release() // one held lane to the first command queued
	wg.Wait()
	for range held - 1 {
		g.release()
	}
	if after, _ := g.groups(t); after != before+1 {
		t.Fatalf("%d groups ran, want 1", after-before)
	}
}

// brokenGroups is the number of groups whose commands ran again alone.
func (g *grouper) brokenGroups() int { return int(testutil.ToFloat64(g.broken)) }

func (c *groupCall) body(t *testing.T) map[string]any {
	t.Helper()
	var b map[string]any
	if err := json.Unmarshal(c.res.Body, &b); err != nil {
		t.Fatalf("%s %s: body %q: %v", c.method, c.id, c.res.Body, err)
	}
	return b
}

func (f *fixture) orderStatus(t *testing.T, id string) string {
	t.Helper()
	var s string
	err := f.db.QueryRow(context.Background(), `SELECT status FROM orders WHERE partner_id = $1 AND remote_id = $2`,
		f.partner, id).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return "absent"
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) ledgerRows(t *testing.T, commandID string) int {
	t.Helper()
	var n int
	if err := f.db.QueryRow(context.Background(), `SELECT count(*) FROM command_ledger WHERE partner_id = $1
		AND command_id = $2`, f.partner, commandID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func order(customer, id string) m {
	return m{"customer": customer, "id": id, "product": "erp-std", "licenses": 1, "duration": "monthly"}
}

// A lone command runs at once in its own transaction: the grouper has no
// clock and no timer, so a command that finds a lane free leads a group of
// one, and a command finding every lane busy runs only when one is handed
// to it.
func TestLoneCommandRunsAtOnceAlone(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.want(protocol.CreateCustomer, m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}, 200)
	g := f.svc.group
	f.want(protocol.CreateFirstOrder, order("C1", "O1"), 200)
	if groups, cmds := g.groups(t); groups != 1 || cmds != 1 {
		t.Fatalf("%d groups of %d commands, want one of one", groups, cmds)
	}
	if s := f.orderStatus(t, "O1"); s != "active" {
		t.Fatalf("order O1 %s after its answer, want active (committed)", s)
	}
	// Every lane busy: the command queues, and runs when a lane is handed on.
	calls := []*groupCall{{id: "s1", method: protocol.SuspendOrder, params: m{"id": "O1"}}}
	f.inOneGroup(t, calls)
	if calls[0].err != nil || calls[0].res.Status != 200 || f.orderStatus(t, "O1") != "suspended" {
		t.Fatalf("queued suspend: %d %v; order %s", calls[0].res.Status, calls[0].err, f.orderStatus(t, "O1"))
	}
	if g.running != 0 {
		t.Fatalf("%d lanes still taken", g.running)
	}
}

// A command that is refused, fails in the database or panics in a group is
// rolled back to its own savepoint; the others commit, each with its ledger
// row and its own answer.
func TestBadCommandsFailAloneInTheirGroup(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.want(protocol.CreateCustomer, m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}, 200)
	f.want(protocol.CreateFirstOrder, order("C1", "O1"), 200)
	f.want(protocol.CreateFirstOrder, order("C1", "O2"), 200)
	// Two methods broken on purpose: resetUser fails in the database after
	// writing (the write is rolled back with it), deleteUser panics.
	reset := f.svc.mux.routes[protocol.ResetUser]
	f.svc.mux.routes[protocol.ResetUser] = &route{def: reset.def, run: inTx,
		h: func(ctx context.Context, tx pgx.Tx, c *call) (any, error) {
			if _, err := tx.Exec(ctx, `UPDATE orders SET licenses = 99 WHERE partner_id = $1`, c.partner); err != nil {
				return nil, err
			}
			_, err := tx.Exec(ctx, `SELECT 1/0`)
			return nil, err
		}}
	del := f.svc.mux.routes[protocol.DeleteUser]
	f.svc.mux.routes[protocol.DeleteUser] = &route{def: del.def, run: inTx,
		h: func(ctx context.Context, tx pgx.Tx, c *call) (any, error) {
			if _, err := tx.Exec(ctx, `UPDATE orders SET licenses = 98 WHERE partner_id = $1`, c.partner); err != nil {
				return nil, err
			}
			panic("deleteUser broken")
		}}
	calls := []*groupCall{
		{id: "a", method: protocol.SuspendOrder, params: m{"id": "O1"}},
		{id: "b", method: protocol.CreateFirstOrder, params: order("NOPE", "O3")},
		{id: "c", method: protocol.ResetUser, params: m{"email": "x@example.com"}},
		{id: "d", method: protocol.DeleteUser, params: m{"email": "x@example.com"}},
		{id: "e", method: protocol.SuspendOrder, params: m{"id": "O2"}},
		{id: "f", method: protocol.CreateFirstOrder, params: order("C1", "O4")},
	}
	f.inOneGroup(t, calls)
	a, b, c, d, e, fo := calls[0], calls[1], calls[2], calls[3], calls[4], calls[5]
	for _, ok := range []*groupCall{a, e, fo} {
		if ok.err != nil || ok.res.Status != 200 {
			t.Fatalf("%s %s: %d %v", ok.method, ok.id, ok.res.Status, ok.err)
		}
	}
	if b.err != nil || b.res.Status != 404 || errCode(b.body(t)) != "customer_not_found" {
		t.Fatalf("order for an unknown customer: %d %s %v", b.res.Status, b.res.Body, b.err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(c.err, &pgErr) || pgErr.Code != "22012" {
		t.Fatalf("failing command: %v, want its own division by zero", c.err)
	}
	if d.panicked != "deleteUser broken" {
		t.Fatalf("panicking command: recovered %v, want its own panic raised in its goroutine", d.panicked)
	}
	for id, want := range map[string]string{"O1": "suspended", "O2": "suspended", "O3": "absent", "O4": "active"} {
		if got := f.orderStatus(t, id); got != want {
			t.Fatalf("order %s %s, want %s", id, got, want)
		}
	}
	var licenses int
	f.db.QueryRow(context.Background(), `SELECT max(licenses) FROM orders`).Scan(&licenses)
	if licenses != 1 {
		t.Fatalf("a failed command's write survived: licenses %d", licenses)
	}
	for id, want := range map[string]int{"a": 1, "b": 1, "c": 0, "d": 0, "e": 1, "f": 1} {
		if got := f.ledgerRows(t, id); got != want {
			t.Fatalf("command %s: %d ledger rows, want %d", id, got, want)
		}
	}
	if n := f.svc.group.brokenGroups(); n != 0 {
		t.Fatalf("%d groups broke: the commands committed alone, not in their group", n)
	}
	// The refusal is recorded with the answer it got.
	var status int
	f.db.QueryRow(context.Background(), `SELECT response_status FROM command_ledger WHERE command_id = 'b'`).Scan(&status)
	if status != 404 {
		t.Fatalf("refusal recorded as %d", status)
	}
}

// A group delivered again (its answers lost, say, or the commit's outcome
// unseen) applies nothing twice: each command meets its ledger row and gets
// the answer it got the first time.
func TestRedeliveredGroupAppliesOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.want(protocol.CreateCustomer, m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}, 200)
	f.want(protocol.CreateFirstOrder, order("C1", "O1"), 200)
	mk := func() []*groupCall {
		return []*groupCall{
			{id: "a", method: protocol.CreateFirstOrder, params: order("C1", "O2")},
			{id: "b", method: protocol.SuspendOrder, params: m{"id": "O1"}},
			{id: "c", method: protocol.ResumeOrder, params: m{"id": "O1"}},
			{id: "d", method: protocol.CreateUser, params: m{"email": "u@example.com", "displayName": "U"}},
			{id: "e", method: protocol.CreateFirstOrder, params: order("NOPE", "O3")},
		}
	}
	first := mk()
	f.inOneGroup(t, first)
	// Commands on one order keep their order in the group: the suspend ran
	// before the resume.
	if s := first[1].body(t)["status"]; s != "suspended" || first[2].body(t)["status"] != "active" {
		t.Fatalf("suspend answered %v, resume %v", s, first[2].body(t)["status"])
	}
	f.clock = f.clock.Add(3600e9) // a later run would answer other times
	again := mk()
	f.inOneGroup(t, again)
	for i := range first {
		if again[i].err != nil || first[i].err != nil || again[i].res.Status != first[i].res.Status ||
			!bytes.Equal(again[i].res.Body, first[i].res.Body) {
			t.Fatalf("%s %s again: %d %s (%v), first %d %s (%v)", again[i].method, again[i].id,
				again[i].res.Status, again[i].res.Body, again[i].err, first[i].res.Status, first[i].res.Body, first[i].err)
		}
		if n := f.ledgerRows(t, first[i].id); n != 1 {
			t.Fatalf("command %s: %d ledger rows", first[i].id, n)
		}
	}
	if n := f.svc.group.brokenGroups(); n != 0 {
		t.Fatalf("%d groups broke", n)
	}
	var orders, users, renewals int
	ctx := context.Background()
	f.db.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&orders)
	f.db.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&users)
	f.db.QueryRow(ctx, `SELECT count(*) FROM order_ids`).Scan(&renewals)
	if orders != 2 || users != 1 || renewals != 2 || f.orderStatus(t, "O1") != "active" {
		t.Fatalf("%d orders, %d users, %d order ids, O1 %s", orders, users, renewals, f.orderStatus(t, "O1"))
	}
}

// A deadlock between a group and another transaction fails the command
// whose statement the database chose, alone: the rest of the group commits,
// and the failed command, transient, runs right when retried.
func TestDeadlockInAGroupFailsOneCommandWhichRetries(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.want(protocol.CreateCustomer, m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}, 200)
	f.want(protocol.CreateFirstOrder, order("C1", "OA"), 200)
	f.want(protocol.CreateFirstOrder, order("C1", "OB"), 200)
	// Another transaction holds OB and, once the group holds OA and waits for
	// OB, asks for OA. Its own deadlock timeout is long, so the group's
	// backend detects the cycle and its statement is the one cancelled.
	other, err := f.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, `SET LOCAL deadlock_timeout = '60s'`); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, `SELECT 1 FROM orders WHERE remote_id = 'OB' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	calls := []*groupCall{
		{id: "a", method: protocol.SuspendOrder, params: m{"id": "OA"}},
		{id: "b", method: protocol.SuspendOrder, params: m{"id": "OB"}},
	}
	done := make(chan error, 1)
	go func() {
		f.waitFor(t, "the group to wait for OB", func() bool {
			var n int
			f.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
				AND wait_event_type = 'Lock'`).Scan(&n)
			return n == 1
		})
		_, err := other.Exec(ctx, `UPDATE orders SET updated_at = updated_at WHERE remote_id = 'OA'`)
		if err == nil {
			err = other.Commit(ctx)
		}
		done <- err
	}()
	f.inOneGroup(t, calls)
	if err := <-done; err != nil {
		t.Fatalf("the other transaction: %v", err)
	}
	a, b := calls[0], calls[1]
	if a.err != nil || a.res.Status != 200 || f.orderStatus(t, "OA") != "suspended" || f.ledgerRows(t, "a") != 1 {
		t.Fatalf("suspend OA: %d %v, order %s", a.res.Status, a.err, f.orderStatus(t, "OA"))
	}
	var pgErr *pgconn.PgError
	if !errors.As(b.err, &pgErr) || pgErr.Code != "40P01" || !IsTransient(b.err) {
		t.Fatalf("suspend OB: %d %v, want its deadlock, transient", b.res.Status, b.err)
	}
	if f.orderStatus(t, "OB") != "active" || f.ledgerRows(t, "b") != 0 {
		t.Fatalf("the deadlocked command left order %s, %d ledger rows", f.orderStatus(t, "OB"), f.ledgerRows(t, "b"))
	}
	if n := f.svc.group.brokenGroups(); n != 0 {
		t.Fatalf("%d groups broke", n)
	}
	// The consumer retries a transient failure: the same command again.
	retry := f.run(t, "b", protocol.SuspendOrder, m{"id": "OB"})
	if retry.Status != 200 || f.orderStatus(t, "OB") != "suspended" || f.ledgerRows(t, "b") != 1 {
		t.Fatalf("retry: %d %s, order %s", retry.Status, retry.Body, f.orderStatus(t, "OB"))
	}
}

// A group whose transaction breaks (here its connection is killed while it
// runs) gives each command back to run alone: every one ends answered once.
func TestBrokenGroupRunsItsCommandsAlone(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.want(protocol.CreateCustomer, m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}, 200)
	f.want(protocol.CreateFirstOrder, order("C1", "O1"), 200)
	var once sync.Once
	suspend := f.svc.mux.routes[protocol.SuspendOrder]
	f.svc.mux.routes[protocol.SuspendOrder] = &route{def: suspend.def, run: inTx,
		h: func(ctx context.Context, tx pgx.Tx, c *call) (any, error) {
			killed := false
			once.Do(func() {
				killed = true
				tx.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`) //nolint:errcheck // it kills itself
			})
			if killed {
				return nil, errors.New("unreachable: the connection is gone")
			}
			return suspend.h(ctx, tx, c)
		}}
	calls := []*groupCall{
		{id: "a", method: protocol.CreateFirstOrder, params: order("C1", "O0")},
		{id: "b", method: protocol.SuspendOrder, params: m{"id": "O1"}},
		{id: "c", method: protocol.CreateFirstOrder, params: order("C1", "O2")},
	}
	f.inOneGroup(t, calls)
	for _, c := range calls {
		if c.err != nil || c.res.Status != 200 || f.ledgerRows(t, c.id) != 1 {
			t.Fatalf("%s %s: %d %s %v", c.method, c.id, c.res.Status, c.res.Body, c.err)
		}
	}
	for id, want := range map[string]string{"O0": "active", "O1": "suspended", "O2": "active"} {
		if got := f.orderStatus(t, id); got != want {
			t.Fatalf("order %s %s, want %s", id, got, want)
		}
	}
	if n := f.svc.group.brokenGroups(); n != 1 {
		t.Fatalf("%d groups broke, want the one", n)
	}
	var n int
	f.db.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n)
	if n != 3 {
		t.Fatalf("%d orders", n)
	}
}

// BenchmarkOrderCommands runs order commands (a first order, then suspend,
// resume, suspend of it, each goroutine its own orders) from 64 goroutines over two services sharing the
// database, as two workers of 32: in groups on 1, 2 or groupLanes lanes, and each
// alone (lanes=0) as before group commit. One op is one command.
func BenchmarkOrderCommands(b *testing.B) {
	for _, lanes := range []int{1, 2, groupLanes, 0} {
		grouped := lanes > 0
		b.Run(fmt.Sprintf("lanes=%d", lanes), func(b *testing.B) {
			f := newFixture(b)
			// Each service its own pool of DATABASE_MAX_CONNS' default, as a worker.
			var svcs []*Service
			for range 2 {
				cfg := f.db.Config().Copy()
				cfg.MaxConns = 10
				db, err := pgxpool.NewWithConfig(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(db.Close)
				svcs = append(svcs, New(db, Config{StorageRoot: f.root}, NewMetrics(prometheus.NewRegistry())))
			}
			if _, status, err := svcs[0].handleRaw(protocol.CreateCustomer, f.partner, `{"id":"C","name":"N","admin":{"email":"a@example.com"}}`); err != nil || status != 200 {
				b.Fatalf("customer: %d %v", status, err)
			}
			for _, s := range svcs {
				if s.group.lanes = lanes; !grouped {
					s.group = nil
				}
			}
			steps := []string{protocol.CreateFirstOrder, protocol.SuspendOrder, protocol.ResumeOrder, protocol.SuspendOrder}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for s := range 64 {
				wg.Go(func() {
					svc := svcs[s%2]
					for j := 0; next.Add(1) <= int64(b.N); j++ {
						order, step := j/len(steps), steps[j%len(steps)]
						raw := fmt.Sprintf(`{"id":"O%d-%d"}`, s, order)
						if step == protocol.CreateFirstOrder {
							raw = fmt.Sprintf(`{"customer":"C","id":"O%d-%d","product":"erp-std","licenses":1,"duration":"monthly"}`, s, order)
						}
						if _, status, err := svc.handleRaw(step, f.partner, raw); err != nil || status != 200 {
							b.Errorf("%s: %d %v", step, status, err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if grouped {
				groups, cmds := 0, 0
				for _, s := range svcs {
					g, c := s.group.groups(b)
					groups, cmds = groups+g, cmds+c
				}
				b.ReportMetric(float64(cmds)/float64(groups), "commands/transaction")
			}
		})
	}
}

func (s *Service) handleRaw(method string, partner int64, params string) (protocol.Result, int, error) {
	res, err := s.Handle(context.Background(), &protocol.Command{Method: method, Partner: partner, RequestID: "r",
		Params: json.RawMessage(params)})
	return res, res.Status, err
}
