package webhooks

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Background work of the dispatcher: the notifications of new events, the
// age of the oldest pending one, and pruning.
const (
	watchEvery = 5 * time.Second
	pruneEvery = time.Minute
	pruneBatch = 1000
)

// listen wakes the loop on every notification of new events (the ledger's
// trigger sends one per transaction that made any), on its own connection
// so that it takes none from the pool. When the connection fails it is made
// again; polling covers the gap.
func (d *Dispatcher) listen(ctx context.Context) {
	for ctx.Err() == nil {
		if err := d.listenOnce(ctx); err != nil && ctx.Err() == nil {
			d.log.DebugContext(ctx, "listening for webhook events failed; polling meanwhile", "error", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(d.cfg.PollInterval):
		}
	}
}

func (d *Dispatcher) listenOnce(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, d.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN webhook_events"); err != nil {
		return err
	}
	d.nudge() // events made before this connection listened
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		d.nudge()
	}
}

// watch keeps oneoffice_webhook_oldest_undelivered_seconds.
func (d *Dispatcher) watch(ctx context.Context) {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		var age float64
		err := d.db.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM now() - min(occurred_at)), 0)::float8
			FROM webhook_events WHERE status = 'pending'`).Scan(&age)
		if err == nil {
			d.m.oldest.Set(age)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// prune deletes the delivered and failed events older than the retention,
// in batches, every pruneEvery.
func (d *Dispatcher) prune(ctx context.Context) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		if _, err := d.pruneOnce(ctx, d.now().Add(-d.cfg.Retention)); err != nil && ctx.Err() == nil {
			d.log.WarnContext(ctx, "pruning webhook events failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Dispatcher) pruneOnce(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for ctx.Err() == nil {
		tag, err := d.db.Exec(ctx, `DELETE FROM webhook_events WHERE ctid IN (SELECT ctid FROM webhook_events
			WHERE occurred_at < $1 AND status <> 'pending' LIMIT $2)`, cutoff, pruneBatch)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		d.m.pruned.Add(float64(tag.RowsAffected()))
		if tag.RowsAffected() < pruneBatch {
			break
		}
	}
	return total, nil
}
