package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/store"
)

// Order is the response of every order method (SPEC section 2). ID is the
// partner's order id; renewals are listed oldest first.
type Order struct {
	ID        string    `json:"id"`
	Customer  string    `json:"customer"`
	Product   string    `json:"product"`
	Licenses  int       `json:"licenses"`
	Duration  string    `json:"duration"`
	Status    string    `json:"status"`
	TermStart int64     `json:"termStart"`
	TermEnd   int64     `json:"termEnd"`
	CreatedAt int64     `json:"createdAt"`
	UpdatedAt int64     `json:"updatedAt"`
	Renewals  []Renewal `json:"renewals"`
}

// Renewal is one renewal term of an order.
type Renewal struct {
	ID        string `json:"id"`
	TermStart int64  `json:"termStart"`
	TermEnd   int64  `json:"termEnd"`
	CreatedAt int64  `json:"createdAt"`
}

// orderRow is an order as stored, before the view rules apply.
type orderRow struct {
	pk                          int64
	Order                       Order
	status                      string
	termStart, termEnd, created time.Time
	updated                     time.Time
	fp                          string
}

const orderSelect = `SELECT o.id, o.remote_id, t.remote_id, o.product, o.licenses, o.duration,
	o.status, o.term_start, o.term_end, o.created_at, o.updated_at, o.request_fp,
	coalesce((SELECT json_agg(json_build_object('id', r.remote_id,
		'termStart', floor(extract(epoch FROM r.term_start))::bigint,
		'termEnd', floor(extract(epoch FROM r.term_end))::bigint,
		'createdAt', floor(extract(epoch FROM r.created_at))::bigint) ORDER BY r.term_start, r.id)
		FROM renewals r WHERE r.order_id = o.id), '[]')
	FROM orders o JOIN tenants t ON t.id = o.tenant_id
	WHERE o.partner_id = $1 AND o.remote_id = $2`

func scanOrder(row pgx.Row) (*orderRow, error) {
	r := new(orderRow)
	var renewals []byte
	o := &r.Order
	err := row.Scan(&r.pk, &o.ID, &o.Customer, &o.Product, &o.Licenses, &o.Duration,
		&r.status, &r.termStart, &r.termEnd, &r.created, &r.updated, &r.fp, &renewals)
	if err != nil {
		return nil, store.NoRows(err)
	}
	if err := json.Unmarshal(renewals, &o.Renewals); err != nil {
		return nil, fmt.Errorf("decode renewals: %w", err)
	}
	return r, nil
}

// view applies the rules that depend on the clock: termStart is the start of
// the term in force now, and an active or suspended order past its termEnd is
// expired.
func (r *orderRow) view(now time.Time) Order {
	o := r.Order
	o.Status = r.status
	if r.status != "cancelled" && now.After(r.termEnd) {
		o.Status = "expired"
	}
	o.TermStart = r.termStart.Unix()
	for _, rn := range o.Renewals {
		if rn.TermStart <= now.Unix() && rn.TermStart > o.TermStart {
			o.TermStart = rn.TermStart
		}
	}
	o.TermEnd = r.termEnd.Unix()
	o.CreatedAt = r.created.Unix()
	o.UpdatedAt = r.updated.Unix()
	return o
}

// loadOrder reads a first order by the partner's id, locking it when lock is
// set. A renewal id gets not_a_first_order unless resolve is set, in which case
// it resolves to its first order.
func (s *Service) loadOrder(ctx context.Context, q querier, c *call, field, id string, lock, resolve bool) (*orderRow, error) {
	sql := orderSelect
	if lock {
		sql += " FOR UPDATE OF o"
	}
	r, err := scanOrder(q.QueryRow(ctx, sql, c.partner, id))
	if !errors.Is(err, store.ErrNotFound) {
		return r, err
	}
	var parent string
	err = store.NoRows(q.QueryRow(ctx, `SELECT o.remote_id FROM renewals r JOIN orders o ON o.id = r.order_id
		WHERE r.partner_id = $1 AND r.remote_id = $2`, c.partner, id).Scan(&parent))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, notFound(protocol.CodeOrderNotFound, field, "order", id)
	case err != nil:
		return nil, err
	case resolve:
		return s.loadOrder(ctx, q, c, field, parent, lock, false)
	}
	return nil, protocol.NewError(http.StatusUnprocessableEntity, protocol.CodeNotAFirstOrder, field,
		fmt.Sprintf("%s %q is a renewal of order %q; name the first order", field, id, parent))
}

func (s *Service) getOrder(ctx context.Context, _ pgx.Tx, c *call, p *protocol.OrderRef) (any, error) {
	r, err := s.loadOrder(ctx, s.db, c, "params.id", p.ID, false, true)
	if err != nil {
		return nil, err
	}
	return r.view(c.now), nil
}

func (s *Service) createFirstOrder(ctx context.Context, tx pgx.Tx, c *call, p *protocol.CreateFirstOrderParams) (any, error) {
	var tenant int64
	err := store.NoRows(tx.QueryRow(ctx, `SELECT id FROM tenants WHERE partner_id = $1 AND remote_id = $2`,
		c.partner, p.Customer).Scan(&tenant))
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(protocol.CodeCustomerNotFound, "params.customer", "customer", p.Customer)
	}
	if err != nil {
		return nil, err
	}
	taken, err := claimOrderID(ctx, tx, c.partner, p.ID, "order")
	if err != nil {
		return nil, err
	}
	if taken {
		return s.existingOrder(ctx, tx, c, p.ID)
	}
	_, err = tx.Exec(ctx, `INSERT INTO orders
		(partner_id, remote_id, tenant_id, product, licenses, duration, status, term_start, term_end, request_fp, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $7, $7)`,
		c.partner, p.ID, tenant, p.Product, p.Licenses, p.Duration, c.now, AddTerm(c.now, p.Duration), c.fp)
	if err != nil {
		return nil, err
	}
	return s.orderView(ctx, tx, c, "params.id", p.ID)
}

// orderView reads a first order as the answer of the change just made to it.
func (s *Service) orderView(ctx context.Context, tx pgx.Tx, c *call, field, id string) (any, error) {
	r, err := s.loadOrder(ctx, tx, c, field, id, false, false)
	if err != nil {
		return nil, err
	}
	return r.view(c.now), nil
}

// claimOrderID takes an id in the partner's order namespace; taken reports that
// it was already there.
func claimOrderID(ctx context.Context, tx pgx.Tx, partner int64, id, kind string) (taken bool, err error) {
	tag, err := tx.Exec(ctx, `INSERT INTO order_ids (partner_id, remote_id, kind) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, partner, id, kind)
	return err == nil && tag.RowsAffected() == 0, err
}

// existingOrder answers a createFirstOrder whose id is taken.
func (s *Service) existingOrder(ctx context.Context, tx pgx.Tx, c *call, id string) (Order, error) {
	r, err := scanOrder(tx.QueryRow(ctx, orderSelect, c.partner, id))
	if err == nil && r.fp == c.fp {
		return r.view(c.now), nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Order{}, err
	}
	return Order{}, conflict(protocol.CodeAlreadyExists, "params.id",
		fmt.Sprintf("order id %q is already used by another order or renewal", id))
}

func (s *Service) createRenewalOrder(ctx context.Context, tx pgx.Tx, c *call, p *protocol.CreateRenewalOrderParams) (any, error) {
	r, err := s.loadOrder(ctx, tx, c, "params.parent", p.Parent, true, false)
	if err != nil {
		return nil, err
	}
	taken, err := claimOrderID(ctx, tx, c.partner, p.ID, "renewal")
	if err != nil {
		return nil, err
	}
	if taken {
		return s.existingRenewal(ctx, tx, c, r, p.ID)
	}
	if r.status == "cancelled" {
		return nil, cancelled(p.Parent, "params.parent")
	}
	start, tooEarly := RenewalCheck(c.now, r.termEnd, s.cfg.RenewalWindow)
	if tooEarly {
		days := int(s.cfg.RenewalWindow.Hours() / 24)
		return nil, protocol.NewError(http.StatusUnprocessableEntity, protocol.CodeRenewalTooEarly, "params.parent", fmt.Sprintf(
			"order %q can be renewed from %d days before its termEnd (%s); it has %.1f days left",
			p.Parent, days, r.termEnd.Format(time.RFC3339), r.termEnd.Sub(c.now).Hours()/24))
	}
	end := AddTerm(start, r.Order.Duration)
	if _, err := tx.Exec(ctx, `INSERT INTO renewals (partner_id, remote_id, order_id, term_start, term_end, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, c.partner, p.ID, r.pk, start, end, c.now); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE orders SET term_end = $2, updated_at = $3 WHERE id = $1`,
		r.pk, end, c.now); err != nil {
		return nil, err
	}
	return s.orderView(ctx, tx, c, "params.parent", p.Parent)
}

// existingRenewal answers a renewal whose id is taken: a renewal of the same
// order is the same call again (its effect holds), anything else is a 409.
func (s *Service) existingRenewal(ctx context.Context, tx pgx.Tx, c *call, r *orderRow, id string) (any, error) {
	var orderPK int64
	err := store.NoRows(tx.QueryRow(ctx, `SELECT order_id FROM renewals WHERE partner_id = $1 AND remote_id = $2`,
		c.partner, id).Scan(&orderPK))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err == nil && orderPK == r.pk {
		return r.view(c.now), nil
	}
	return nil, conflict(protocol.CodeAlreadyExists, "params.id",
		fmt.Sprintf("order id %q is already used by another order or renewal", id))
}

func cancelled(id, field string) *protocol.Error {
	return conflict(protocol.CodeOrderCancelled, field, fmt.Sprintf("order %q is cancelled; cancellation is final", id))
}
