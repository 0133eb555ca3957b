package provision

import (
	"context"
	"log/slog"
	"time"
)

// Ledger rows are pruned in small batches, so that a worker never holds many
// row locks or writes a burst of WAL; any number of workers may prune at once.
const (
	pruneEvery = time.Minute
	pruneBatch = 1000
)

// PruneLedger deletes the ledger rows completed more than retention ago, in
// batches of pruneBatch, every pruneEvery until ctx ends.
func (s *Service) PruneLedger(ctx context.Context, retention time.Duration, log *slog.Logger) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		if _, err := s.pruneLedger(ctx, s.now().Add(-retention)); err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "pruning the command ledger failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruneLedger deletes the rows completed before cutoff and returns how many.
func (s *Service) pruneLedger(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for ctx.Err() == nil {
		tag, err := s.db.Exec(ctx, `DELETE FROM command_ledger WHERE ctid IN
			(SELECT ctid FROM command_ledger WHERE completed_at < $1 LIMIT $2)`, cutoff, pruneBatch)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		s.m.ledgerPruned.Add(float64(tag.RowsAffected()))
		if tag.RowsAffected() < pruneBatch {
			break
		}
	}
	return total, nil
}
