package provision

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/reads"
)

// changeOrder runs a mutation of one first order under its row lock, so that a
// suspend and a cancel arriving together are applied one after the other and
// each gets the order as its own change left it.
func (s *Service) changeOrder(ctx context.Context, tx pgx.Tx, c *call, id string, change func(tx pgx.Tx, r *reads.OrderRow) error) (any, error) {
	r, err := s.loadOrder(ctx, tx, c, "params.id", id, true, false)
	if err != nil {
		return nil, err
	}
	if err := change(tx, r); err != nil {
		return nil, err
	}
	return s.orderView(ctx, tx, c, "params.id", id)
}

// setStatus moves an order to status unless it is there already.
func (s *Service) setStatus(ctx context.Context, tx pgx.Tx, c *call, r *reads.OrderRow, status string) error {
	if r.Status == status {
		return nil
	}
	_, err := tx.Exec(ctx, `UPDATE orders SET status = $2, updated_at = $3 WHERE id = $1`, r.PK, status, c.now)
	return err
}

func (s *Service) cancelOrder(ctx context.Context, tx pgx.Tx, c *call, p *protocol.OrderRef) (any, error) {
	return s.changeOrder(ctx, tx, c, p.ID, func(tx pgx.Tx, r *reads.OrderRow) error {
		return s.setStatus(ctx, tx, c, r, "cancelled")
	})
}

func (s *Service) suspendOrder(ctx context.Context, tx pgx.Tx, c *call, p *protocol.OrderRef) (any, error) {
	return s.moveLiveOrder(ctx, tx, c, p.ID, "suspended")
}

func (s *Service) resumeOrder(ctx context.Context, tx pgx.Tx, c *call, p *protocol.OrderRef) (any, error) {
	return s.moveLiveOrder(ctx, tx, c, p.ID, "active")
}

// moveLiveOrder suspends or resumes an order; a cancelled one stays cancelled.
func (s *Service) moveLiveOrder(ctx context.Context, tx pgx.Tx, c *call, id, status string) (any, error) {
	return s.changeOrder(ctx, tx, c, id, func(tx pgx.Tx, r *reads.OrderRow) error {
		if r.Status == "cancelled" {
			return cancelled(id, "params.id")
		}
		return s.setStatus(ctx, tx, c, r, status)
	})
}

func (s *Service) updateOrder(ctx context.Context, tx pgx.Tx, c *call, p *protocol.UpdateOrderParams) (any, error) {
	return s.changeOrder(ctx, tx, c, p.ID, func(tx pgx.Tx, r *reads.OrderRow) error {
		if r.Status == "cancelled" {
			return cancelled(p.ID, "params.id")
		}
		_, err := tx.Exec(ctx, `UPDATE orders SET licenses = coalesce($2, licenses),
			product = coalesce($3, product), updated_at = $4 WHERE id = $1`, r.PK, p.Licenses, p.Product, c.now)
		return err
	})
}
