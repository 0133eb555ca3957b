package provision

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/reads"
	"github.com/oneoffice/provisioner/shared/store"
)

// loadOrder reads the partner's first order (reads.LoadOrder).
func (s *Service) loadOrder(ctx context.Context, q querier, c *call, field, id string, lock, resolve bool) (*reads.OrderRow, error) {
	return reads.LoadOrder(ctx, q, c.partner, field, id, lock, resolve)
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
	return r.View(c.now), nil
}

// claimOrderID takes an id in the partner's order namespace; taken reports that
// it was already there.
func claimOrderID(ctx context.Context, tx pgx.Tx, partner int64, id, kind string) (taken bool, err error) {
	tag, err := tx.Exec(ctx, `INSERT INTO order_ids (partner_id, remote_id, kind) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, partner, id, kind)
	return err == nil && tag.RowsAffected() == 0, err
}

// existingOrder answers a createFirstOrder whose id is taken.
func (s *Service) existingOrder(ctx context.Context, tx pgx.Tx, c *call, id string) (reads.Order, error) {
	r, err := reads.ScanOrder(tx.QueryRow(ctx, reads.OrderByID, c.partner, id))
	if err == nil && r.FP == c.fp {
		return r.View(c.now), nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return reads.Order{}, err
	}
	return reads.Order{}, conflict(protocol.CodeAlreadyExists, "params.id",
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
	if r.Status == "cancelled" {
		return nil, cancelled(p.Parent, "params.parent")
	}
	start, tooEarly := RenewalCheck(c.now, r.TermEnd, s.cfg.RenewalWindow)
	if tooEarly {
		days := int(s.cfg.RenewalWindow.Hours() / 24)
		return nil, protocol.NewError(http.StatusUnprocessableEntity, protocol.CodeRenewalTooEarly, "params.parent", fmt.Sprintf(
			"order %q can be renewed from %d days before its termEnd (%s); it has %.1f days left",
			p.Parent, days, r.TermEnd.Format(time.RFC3339), r.TermEnd.Sub(c.now).Hours()/24))
	}
	end := AddTerm(start, r.Order.Duration)
	if _, err := tx.Exec(ctx, `INSERT INTO renewals (partner_id, remote_id, order_id, term_start, term_end, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, c.partner, p.ID, r.PK, start, end, c.now); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE orders SET term_end = $2, updated_at = $3 WHERE id = $1`,
		r.PK, end, c.now); err != nil {
		return nil, err
	}
	return s.orderView(ctx, tx, c, "params.parent", p.Parent)
}

// existingRenewal answers a renewal whose id is taken: a renewal of the same
// order is the same call again (its effect holds), anything else is a 409.
func (s *Service) existingRenewal(ctx context.Context, tx pgx.Tx, c *call, r *reads.OrderRow, id string) (any, error) {
	var orderPK int64
	err := store.NoRows(tx.QueryRow(ctx, `SELECT order_id FROM renewals WHERE partner_id = $1 AND remote_id = $2`,
		c.partner, id).Scan(&orderPK))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err == nil && orderPK == r.PK {
		return r.View(c.now), nil
	}
	return nil, conflict(protocol.CodeAlreadyExists, "params.id",
		fmt.Sprintf("order id %q is already used by another order or renewal", id))
}

func cancelled(id, field string) *protocol.Error {
	return conflict(protocol.CodeOrderCancelled, field, fmt.Sprintf("order %q is cancelled; cancellation is final", id))
}
