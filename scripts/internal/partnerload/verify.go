package partnerload

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// Drain waits until depth (the command queue's messages, ready and unacked)
// is 0 twice in a row a second apart, within limit: every 202'd command has
// then run.
func Drain(ctx context.Context, limit time.Duration, depth func(context.Context) (int, error)) error {
	deadline := time.Now().Add(limit)
	calm := 0
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n, err := depth(ctx)
		if err == nil && n == 0 {
			if calm++; calm == 2 {
				return nil
			}
		} else {
			calm = 0
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("draining the command queue: %w", err)
	}
	return fmt.Errorf("the command queue did not drain within %s", limit)
}

// Checked is what Check compared with the database.
type Checked struct {
	// Total is how many effects were checked; ByPhase counts them by the
	// phase of the call that decided each.
	Total   int
	ByPhase map[string]int
	// Replays counts the keyed calls whose chain holds more ledger rows than
	// the one with the key: repeats that Redis had forgotten, sent as new
	// commands and answered from the call's row.
	Replays int
	// Errs are the violations, each naming the call.
	Errs []error
}

// Check compares every answer of the load (which must have ended, and the
// queue drained) with the rows of db: the resources the flows made, and the
// command ledger. A call answered 200 or 202 took effect once, a call
// answered 503 took none.
func Check(ctx context.Context, db *pgxpool.Pool, ld *Load) (*Checked, error) {
	c := &checker{db: db, partners: ld.cfg.Partners, marks: ld.Marks(), res: &Checked{ByPhase: map[string]int{}}}
	if err := c.load(ctx); err != nil {
		return nil, err
	}
	c.customers(ld.model)
	c.orders(ld.model)
	c.users(ld.model)
	c.ledger(ctx, ld.Calls())
	c.res.Errs = c.errs
	return c.res, nil
}

// checker compares the model with the rows of every partner.
type checker struct {
	db       *pgxpool.Pool
	partners []Partner
	marks    []Mark
	res      *Checked
	errs     []error

	customerRows map[ref]int
	orderRows    map[ref]orderRow
	renewalRows  map[ref][]renewalRow // by order
	renewalIDs   map[ref]bool
	userRows     map[ref][]byte
	ledgerRows   map[ref]ledgerRow // by request id
}

// ledgerRow sums the ledger's rows of one request id.
type ledgerRow struct {
	rows   int
	owning int // of them, rows that hold the call's idempotency key
	status int // the highest response_status
}

// count counts n checks in the phase of at.
func (c *checker) count(at time.Time, n int) {
	c.res.Total += n
	c.res.ByPhase[PhaseOf(c.marks, at)] += n
}

type orderRow struct {
	status, product string
	licenses        int
	termEnd         time.Time
}

type renewalRow struct {
	id         string
	start, end time.Time
}

func (c *checker) failf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

func (c *checker) load(ctx context.Context) error {
	c.customerRows, c.orderRows = map[ref]int{}, map[ref]orderRow{}
	c.renewalRows, c.renewalIDs, c.userRows = map[ref][]renewalRow{}, map[ref]bool{}, map[ref][]byte{}
	c.ledgerRows = map[ref]ledgerRow{}
	for i, p := range c.partners {
		var id, oid string
		var o orderRow
		var r renewalRow
		var l ledgerRow
		var h []byte
		queries := []struct {
			sql  string
			scan []any
			row  func()
		}{
			{`SELECT remote_id FROM tenants WHERE partner_id = $1 AND kind = 'customer'`,
				[]any{&id}, func() { c.customerRows[ref{i, id}]++ }},
			{`SELECT remote_id, status, product, licenses, term_end FROM orders WHERE partner_id = $1`,
				[]any{&id, &o.status, &o.product, &o.licenses, &o.termEnd}, func() { c.orderRows[ref{i, id}] = o }},
			{`SELECT o.remote_id, r.remote_id, r.term_start, r.term_end FROM renewals r
				JOIN orders o ON o.id = r.order_id WHERE r.partner_id = $1 ORDER BY r.term_start`,
				[]any{&oid, &r.id, &r.start, &r.end}, func() {
					c.renewalRows[ref{i, oid}] = append(c.renewalRows[ref{i, oid}], r)
					c.renewalIDs[ref{i, r.id}] = true
				}},
			{`SELECT request_id, count(*), count(idem_key), max(response_status)
				FROM command_ledger WHERE partner_id = $1 GROUP BY request_id`,
				[]any{&id, &l.rows, &l.owning, &l.status}, func() { c.ledgerRows[ref{i, id}] = l }},
			{`SELECT u.email, u.reset_token_hash FROM users u
				JOIN tenants t ON t.id = u.tenant_id WHERE t.partner_id = $1`,
				[]any{&id, &h}, func() { c.userRows[ref{i, id}] = h }},
		}
		for _, q := range queries {
			rows, err := c.db.Query(ctx, q.sql, p.ID)
			if err != nil {
				return err
			}
			if _, err := pgx.ForEachRow(rows, q.scan, func() error { q.row(); return nil }); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *checker) customers(m *model) {
	for r, want := range m.customers {
		c.count(want.at, 1)
		got := c.customerRows[r]
		switch {
		case want.presence == present && got != 1:
			c.failf("customer %s: %d rows after %s", r.id, got, want.by)
		case want.presence == absent && got != 0:
			c.failf("customer %s: created after %s", r.id, want.by)
		}
	}
}

func (c *checker) orders(m *model) {
	for r, want := range m.orders {
		c.count(want.at, 1)
		row, ok := c.orderRows[r]
		if want.presence == absent {
			if ok {
				c.failf("order %s: created after %s", r.id, want.by)
			}
			continue
		}
		if !ok {
			c.failf("order %s: absent after %s", r.id, want.by)
			continue
		}
		for _, a := range want.absentRenewals {
			c.count(want.at, 1)
			if c.renewalIDs[ref{r.p, a.id}] {
				c.failf("renewal %s: applied after %s", a.id, a.by)
			}
		}
		if !want.known {
			continue
		}
		c.count(want.at, 3)
		if row.status != want.status || row.licenses != want.licenses || row.product != want.product {
			c.failf("order %s: status %s, %d licenses, %s; the answers say %s, %d, %s (last: %s)", r.id,
				row.status, row.licenses, row.product, want.status, want.licenses, want.product, want.by)
		}
		c.renewals(r, want, row)
	}
}

// renewals checks that each renewal that took effect did so once: one row
// each, every term starting where the one before ended, the order's term end
// the last one's.
func (c *checker) renewals(r ref, want *orderWant, row orderRow) {
	got := c.renewalRows[r]
	var ids []string
	for _, g := range got {
		ids = append(ids, g.id)
	}
	c.count(want.at, 1)
	if !slices.Equal(ids, want.renewals) {
		c.failf("order %s: renewals %v in the database, %v answered 200/202", r.id, ids, want.renewals)
		return
	}
	end := row.termEnd
	for i, g := range got {
		c.count(want.at, 1)
		if i == 0 && want.termEnd != 0 && g.start.Unix() != want.termEnd {
			c.failf("order %s: renewal %s starts at %d, the first term ended at %d", r.id, g.id, g.start.Unix(), want.termEnd)
		}
		if i > 0 && !g.start.Equal(got[i-1].end) {
			c.failf("order %s: renewal %s starts at %s, the one before ended at %s", r.id, g.id, g.start, got[i-1].end)
		}
	}
	if len(got) > 0 && !got[len(got)-1].end.Equal(end) {
		c.failf("order %s: term ends at %s, its last renewal at %s", r.id, end, got[len(got)-1].end)
	}
	if len(got) == 0 && want.termEnd != 0 && end.Unix() != want.termEnd {
		c.failf("order %s: term ends at %d without renewals, createFirstOrder said %d", r.id, end.Unix(), want.termEnd)
	}
}

func (c *checker) users(m *model) {
	for r, want := range m.users {
		c.count(want.at, 1)
		h, ok := c.userRows[r]
		switch {
		case want.presence == absent && ok && want.known:
			c.failf("user %s: present after %s", r.id, want.by)
		case want.presence == present && !ok:
			c.failf("user %s: absent after %s", r.id, want.by)
		case want.presence == present && want.known && want.tokenHash != nil && !want.resetPending:
			c.count(want.at, 1)
			if !bytes.Equal(h, want.tokenHash) {
				c.failf("user %s: holds another reset token than the one answered with 200 (last: %s)", r.id, want.by)
			}
		case want.presence == present && want.known && want.tokenHash == nil && !want.resetPending:
			c.count(want.at, 1)
			if h != nil {
				c.failf("user %s: a reset token was stored (last: %s)", r.id, want.by)
			}
		case want.presence == present && want.resetPending:
			c.count(want.at, 1)
			if h == nil {
				c.failf("user %s: resetUser answered 202 but no token was stored", r.id)
			}
		}
	}
}

// chain is a mutating call and its repeats after a 202, under one key.
type chain struct {
	first Call
	rids  []string
}

// ledger checks the command ledger call by call. A mutating call answered
// 200 or 202 has one row that holds its idempotency key: under its request
// id or, when Redis lost its record and a repeat was sent as a new command,
// under a repeat's; the other commands of such a chain are recorded without
// the key, answered from that row (a replay, no effect). A call without a
// key has one row. A call answered 503 has none. A lone call answered 200 is
// recorded as a 200.
func (c *checker) ledger(ctx context.Context, calls []Call) {
	var chains []*chain
	byKey := map[ref]*chain{}
	for _, call := range calls {
		m, _ := protocol.Lookup(call.Method)
		if m == nil || !m.Mutates {
			continue
		}
		if call.Repeat {
			if ch := byKey[ref{call.Partner, call.Key}]; ch != nil {
				ch.rids = append(ch.rids, call.RequestID)
			}
			continue
		}
		ch := &chain{first: call, rids: []string{call.RequestID}}
		chains = append(chains, ch)
		if call.Key != "" {
			byKey[ref{call.Partner, call.Key}] = ch
		}
	}
	for _, ch := range chains {
		want := 0
		switch ch.first.Status {
		case http.StatusOK, http.StatusAccepted:
			want = 1
		case http.StatusServiceUnavailable:
		default:
			continue // reported by the load
		}
		var sum ledgerRow
		for _, rid := range ch.rids {
			l := c.ledgerRows[ref{ch.first.Partner, rid}]
			sum.rows, sum.owning, sum.status = sum.rows+l.rows, sum.owning+l.owning, max(sum.status, l.status)
		}
		got, what := sum.rows, "ledger rows"
		if ch.first.Key != "" && want == 1 {
			got, what = sum.owning, "ledger rows holding its key"
		}
		c.count(ch.first.Start, 1)
		if ch.first.Key != "" && sum.rows > sum.owning && sum.owning == 1 {
			c.res.Replays++
		}
		switch {
		case got != want:
			c.failf("%s %s answered %d: %d %s (%d in all, over %d calls), want %d%s", ch.first.Method, ch.first.RequestID,
				ch.first.Status, got, what, sum.rows, len(ch.rids), want, c.ledgerDetail(ctx, ch))
		case ch.first.Status == http.StatusOK && len(ch.rids) == 1 && sum.status != http.StatusOK:
			c.failf("%s %s answered 200: recorded in the ledger as %d", ch.first.Method, ch.first.RequestID, sum.status)
		}
	}
}

// ledgerDetail lists the ledger rows of a chain, for a failure's message.
func (c *checker) ledgerDetail(ctx context.Context, ch *chain) string {
	if c.db == nil {
		return ""
	}
	rows, err := c.db.Query(ctx, `SELECT request_id, command_id, coalesce(idem_key, '-'), status, response_status,
		completed_at FROM command_ledger WHERE partner_id = $1 AND request_id = ANY($2) ORDER BY completed_at`,
		c.partners[ch.first.Partner].ID, ch.rids)
	if err != nil {
		return fmt.Sprintf("; ledger rows: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var rid, cmd, key, status string
		var code int
		var at time.Time
		rows.Scan(&rid, &cmd, &key, &status, &code, &at)
		out = append(out, fmt.Sprintf("%s command %s key %s %s %d at %s", rid, cmd, key, status, code, at.Format("15:04:05.000")))
	}
	return fmt.Sprintf("; calls %v; ledger rows: %s", ch.rids, strings.Join(out, "; "))
}
