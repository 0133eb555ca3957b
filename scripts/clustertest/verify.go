package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// drain waits until the command queue is empty and nothing is unacked, twice
// in a row a second apart: every 202'd command has then run.
func drain(ctx context.Context, cl *cluster) error {
	deadline := time.Now().Add(drainLimit)
	calm := 0
	for time.Now().Before(deadline) {
		q, err := cl.queue(ctx, "oneoffice.commands")
		if err == nil && q.Messages == 0 && q.Unacked == 0 {
			if calm++; calm == 2 {
				return nil
			}
		} else {
			calm = 0
		}
		sleep(ctx, time.Second)
	}
	return fmt.Errorf("the command queue did not drain within %s", drainLimit)
}

// judge checks every call against PostgreSQL and the limits.
func judge(ctx context.Context, cfg *config, st *stack, ld *load, res *results) error {
	res.summarize(ld)
	var errs []error
	for _, f := range ld.failures {
		errs = append(errs, errors.New(f))
	}
	if res.slowest > cfg.rpcTimeout+overRPCTimeout {
		errs = append(errs, fmt.Errorf("a call took %s, past RPC_TIMEOUT %s + %s", res.slowest, cfg.rpcTimeout, overRPCTimeout))
	}
	for i, l := range res.losses {
		if l.recovery < 0 {
			errs = append(errs, fmt.Errorf("loss %d: a gateway served nothing after it", i+1))
		} else if l.recovery > maxRecovery {
			errs = append(errs, fmt.Errorf("loss %d: serving again after %s, past %s", i+1, l.recovery, maxRecovery))
		}
	}
	ch := &checker{st: st, res: res}
	if err := ch.load(ctx); err != nil {
		return errors.Join(append(errs, err)...)
	}
	ch.customers(ld.model)
	ch.orders(ld.model)
	ch.users(ld.model)
	return errors.Join(append(errs, ch.errs...)...)
}

// checker compares the model with the rows of every partner.
type checker struct {
	st   *stack
	res  *results
	errs []error

	customerRows map[ref]int
	orderRows    map[ref]orderRow
	renewalRows  map[ref][]renewalRow // by order
	renewalIDs   map[ref]bool
	userRows     map[ref][]byte
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
	for i, p := range c.st.partners {
		rows, err := c.st.db.Query(ctx, `SELECT remote_id FROM tenants WHERE partner_id = $1 AND kind = 'customer'`, p.id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			rows.Scan(&id)
			c.customerRows[ref{i, id}]++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = c.st.db.Query(ctx, `SELECT remote_id, status, product, licenses, term_end FROM orders WHERE partner_id = $1`, p.id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			var o orderRow
			rows.Scan(&id, &o.status, &o.product, &o.licenses, &o.termEnd)
			c.orderRows[ref{i, id}] = o
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = c.st.db.Query(ctx, `SELECT o.remote_id, r.remote_id, r.term_start, r.term_end FROM renewals r
			JOIN orders o ON o.id = r.order_id WHERE r.partner_id = $1 ORDER BY r.term_start`, p.id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var oid string
			var r renewalRow
			rows.Scan(&oid, &r.id, &r.start, &r.end)
			c.renewalRows[ref{i, oid}] = append(c.renewalRows[ref{i, oid}], r)
			c.renewalIDs[ref{i, r.id}] = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = c.st.db.Query(ctx, `SELECT u.email, u.reset_token_hash FROM users u
			JOIN tenants t ON t.id = u.tenant_id WHERE t.partner_id = $1`, p.id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var email string
			var h []byte
			rows.Scan(&email, &h)
			c.userRows[ref{i, email}] = h
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) customers(m *model) {
	for r, want := range m.customers {
		c.res.checked++
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
		c.res.checked++
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
			c.res.checked++
			if c.renewalIDs[ref{r.p, a.id}] {
				c.failf("renewal %s: applied after %s", a.id, a.by)
			}
		}
		if !want.known {
			continue
		}
		c.res.checked += 3
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
	c.res.checked++
	if !slices.Equal(ids, want.renewals) {
		c.failf("order %s: renewals %v in the database, %v answered 200/202", r.id, ids, want.renewals)
		return
	}
	end := row.termEnd
	for i, g := range got {
		c.res.checked++
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
		c.res.checked++
		h, ok := c.userRows[r]
		switch {
		case want.presence == absent && ok && want.known:
			c.failf("user %s: present after %s", r.id, want.by)
		case want.presence == present && !ok:
			c.failf("user %s: absent after %s", r.id, want.by)
		case want.presence == present && want.known && want.tokenHash != nil && !want.resetPending:
			c.res.checked++
			if !bytes.Equal(h, want.tokenHash) {
				c.failf("user %s: holds another reset token than the one answered with 200 (last: %s)", r.id, want.by)
			}
		case want.presence == present && want.known && want.tokenHash == nil && !want.resetPending:
			c.res.checked++
			if h != nil {
				c.failf("user %s: a reset token was stored (last: %s)", r.id, want.by)
			}
		case want.presence == present && want.resetPending:
			c.res.checked++
			if h == nil {
				c.failf("user %s: resetUser answered 202 but no token was stored", r.id)
			}
		}
	}
}
