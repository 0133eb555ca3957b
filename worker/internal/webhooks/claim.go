package webhooks

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/webhook"
)

// event is one pending event taken by this dispatcher, with its endpoint.
type event struct {
	id         int64
	eventID    string
	partner    int64
	body       string
	occurredAt time.Time
	retryFrom  time.Time
	attempt    int
	replays    int // the event's replay count when claimed: the fence of its outcome
	url        string
	sealed     []byte
}

// claimSQL takes up to $1 due events of enabled endpoints, skipping the
// partners of $2 (their endpoints are busy here) and the events of an order
// whose older event is still pending, and leases them until now + $3: a
// dispatcher that dies with them leaves them due again at the end of the
// lease. SKIP LOCKED lets dispatchers claim side by side without waiting
// for each other.
const claimSQL = `WITH due AS (
	SELECT e.id FROM webhook_events e
	JOIN webhook_endpoints w ON w.partner_id = e.partner_id AND w.enabled
	WHERE e.status = 'pending' AND e.next_attempt_at <= now() AND e.partner_id <> ALL (coalesce($2::bigint[], '{}'))
	  AND (e.order_id IS NULL OR NOT EXISTS (SELECT 1 FROM webhook_events o
		WHERE o.partner_id = e.partner_id AND o.order_id = e.order_id AND o.status = 'pending' AND o.id < e.id))
	ORDER BY e.next_attempt_at, e.id
	LIMIT $1
	FOR UPDATE OF e SKIP LOCKED)
UPDATE webhook_events e SET next_attempt_at = now() + $3::interval, attempts = e.attempts + 1
FROM due, webhook_endpoints w
WHERE e.id = due.id AND w.partner_id = e.partner_id
RETURNING e.id, e.event_id::text, e.partner_id, e.body, e.occurred_at, e.retry_from, e.attempts, e.replays, w.url, w.secret_sealed`

// claim takes up to n due events, none of the partners in busy.
func (d *Dispatcher) claim(ctx context.Context, n int, busy []int64) ([]event, error) {
	rows, err := d.db.Query(ctx, claimSQL, n, busy, d.lease)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (event, error) {
		var e event
		err := r.Scan(&e.id, &e.eventID, &e.partner, &e.body, &e.occurredAt, &e.retryFrom, &e.attempt, &e.replays, &e.url, &e.sealed)
		return e, err
	})
}

// release gives back events claimed beyond an endpoint's share: due again
// at once, their attempt not counted.
func (d *Dispatcher) release(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := d.db.Exec(ctx, `UPDATE webhook_events SET next_attempt_at = now(), attempts = attempts - 1
		WHERE id = ANY ($1) AND status = 'pending'`, ids)
	return err
}

// record keeps one attempt of e for listEvents: when it started, the
// endpoint's status (none when no answer came), how long it took and, when
// it failed, why.
func (d *Dispatcher) record(ctx context.Context, e event, at time.Time, took time.Duration, status int, err error) error {
	var st *int
	if status != 0 {
		st = &status
	}
	var reason *string
	if err != nil {
		r := err.Error()
		reason = &r
	} else if status < 200 || status >= 300 {
		r := http.StatusText(status)
		reason = &r
	}
	_, dbErr := d.db.Exec(ctx, `INSERT INTO webhook_attempts (event_pk, at, status, duration_ms, error)
		VALUES ($1, $2, $3, $4, $5)`, e.id, at, st, took.Milliseconds(), reason)
	return dbErr
}

// delivered records the event's 2xx. A lease that ran out meanwhile does not
// matter: the event was delivered. A replay meanwhile does: the event stays
// pending, to be sent again.
func (d *Dispatcher) delivered(ctx context.Context, e event, status int) error {
	_, err := d.db.Exec(ctx, `UPDATE webhook_events SET status = 'delivered', delivered_at = now(),
		last_status = $2, last_error = NULL WHERE id = $1 AND status = 'pending' AND replays = $3`, e.id, status, e.replays)
	return err
}

// gone records the 410 of e's endpoint: e fails with it, and the endpoint is
// disabled, its other pending events failed, in one transaction.
func (d *Dispatcher) gone(ctx context.Context, e event) error {
	return store.WithTx(ctx, d.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE webhook_events SET status = 'failed', last_status = 410,
			last_error = '410 Gone' WHERE id = $1 AND status = 'pending' AND replays = $2`, e.id, e.replays); err != nil {
			return err
		}
		return webhook.DisableTx(ctx, tx, e.partner, "the endpoint answered 410 Gone")
	})
}

// retry records a failed attempt: due again at next, or failed when next is
// zero. A lease that ran out (another dispatcher took the event again) keeps
// that dispatcher's say, and so does a replay meanwhile.
func (d *Dispatcher) retry(ctx context.Context, e event, status int, reason string, next time.Time) error {
	var st *int
	if status != 0 {
		st = &status
	}
	if next.IsZero() {
		_, err := d.db.Exec(ctx, `UPDATE webhook_events SET status = 'failed', last_status = $3, last_error = $4
			WHERE id = $1 AND attempts = $2 AND status = 'pending' AND replays = $5`, e.id, e.attempt, st, reason, e.replays)
		return err
	}
	_, err := d.db.Exec(ctx, `UPDATE webhook_events SET next_attempt_at = $5, last_status = $3, last_error = $4
		WHERE id = $1 AND attempts = $2 AND status = 'pending' AND replays = $6`, e.id, e.attempt, st, reason, next, e.replays)
	return err
}
