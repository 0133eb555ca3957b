package webhook

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/store"
)

// ErrNoEndpoint reports a partner without an endpoint.
var ErrNoEndpoint = errors.New("the partner has no webhook endpoint: set one with webhooks set")

// Endpoint is a partner's endpoint, its secret opened.
type Endpoint struct {
	Partner int64
	URL     string
	Secret  string
	Enabled bool
}

// Conn is a pool or a transaction: an admin command runs its change in the
// transaction of its audit entry (shared/audit).
type Conn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// PartnerID returns the id of the (live) partner called name.
func PartnerID(ctx context.Context, db Conn, name string) (int64, error) {
	var id int64
	err := store.NoRows(db.QueryRow(ctx, `SELECT id FROM partners WHERE name = $1 AND live_partner_id IS NULL`, name).Scan(&id))
	if errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("no partner named %q (keys create makes one)", name)
	}
	return id, err
}

// SetEndpoint gives the partner called name the endpoint url, enabled, with
// a new signing secret, which it returns: the only time it is seen in clear.
func SetEndpoint(ctx context.Context, db Conn, s *Sealer, p Policy, name, url string) (string, error) {
	partner, err := PartnerID(ctx, db, name)
	if err != nil {
		return "", err
	}
	return SetPartnerEndpoint(ctx, db, s, p, partner, url)
}

// SetPartnerEndpoint is SetEndpoint of the partner with id partner.
func SetPartnerEndpoint(ctx context.Context, db Conn, s *Sealer, p Policy, partner int64, url string) (string, error) {
	if s == nil {
		return "", ErrNoKey
	}
	if err := p.CheckURL(url); err != nil {
		return "", fmt.Errorf("--url: %w", err)
	}
	secret, err := NewSecret()
	if err != nil {
		return "", err
	}
	sealed, err := s.Seal(partner, secret)
	if err != nil {
		return "", err
	}
	_, err = db.Exec(ctx, `INSERT INTO webhook_endpoints (partner_id, url, secret_sealed) VALUES ($1, $2, $3)
		ON CONFLICT (partner_id) DO UPDATE SET url = excluded.url, secret_sealed = excluded.secret_sealed,
			enabled = true, disabled_reason = NULL, updated_at = now()`, partner, url, sealed)
	return secret, err
}

// Disable stops the partner's events: no new ones are made, and the pending
// ones are set aside as failed (a replay sends them once it is enabled
// again). reason is kept with the endpoint.
func Disable(ctx context.Context, db *pgxpool.Pool, partner int64, reason string) error {
	return store.WithTx(ctx, db, func(tx pgx.Tx) error { return DisableTx(ctx, tx, partner, reason) })
}

// DisableTx is Disable in the transaction tx.
func DisableTx(ctx context.Context, tx pgx.Tx, partner int64, reason string) error {
	tag, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2,
		updated_at = now() WHERE partner_id = $1`, partner, reason)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNoEndpoint
	}
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE webhook_events SET status = 'failed', last_error = $2
		WHERE partner_id = $1 AND status = 'pending'`, partner, "endpoint disabled: "+reason)
	return err
}

// LoadEndpoint returns the partner's endpoint with its secret opened.
func LoadEndpoint(ctx context.Context, db *pgxpool.Pool, s *Sealer, partner int64) (Endpoint, error) {
	if s == nil {
		return Endpoint{}, ErrNoKey
	}
	e := Endpoint{Partner: partner}
	var sealed []byte
	err := store.NoRows(db.QueryRow(ctx, `SELECT url, secret_sealed, enabled FROM webhook_endpoints
		WHERE partner_id = $1`, partner).Scan(&e.URL, &sealed, &e.Enabled))
	if errors.Is(err, store.ErrNotFound) {
		return e, ErrNoEndpoint
	}
	if err != nil {
		return e, err
	}
	e.Secret, err = s.Open(partner, sealed)
	return e, err
}

// Failure is one failed event, as listed for an operator.
type Failure struct {
	ID         string
	Type       string
	OrderID    string
	OccurredAt time.Time
	Attempts   int
	LastStatus int
	LastError  string
}

// ListFailed returns the partner's failed events that occurred since, oldest
// first, at most limit.
func ListFailed(ctx context.Context, db *pgxpool.Pool, partner int64, since time.Time, limit int) ([]Failure, error) {
	rows, err := db.Query(ctx, `SELECT event_id::text, event_type, coalesce(order_id, ''), occurred_at, attempts,
		coalesce(last_status, 0), coalesce(last_error, '') FROM webhook_events
		WHERE partner_id = $1 AND occurred_at >= $2 AND status = 'failed' ORDER BY occurred_at, id LIMIT $3`,
		partner, since, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Failure, error) {
		var f Failure
		err := r.Scan(&f.ID, &f.Type, &f.OrderID, &f.OccurredAt, &f.Attempts, &f.LastStatus, &f.LastError)
		f.ID = MessageID(f.ID)
		return f, err
	})
}

// Replay makes the partner's failed events that occurred since pending
// again, due now, with a new retry window, and returns how many. Their
// webhook-id stays, so a receiver that did get one can drop it.
func Replay(ctx context.Context, db Conn, partner int64, since time.Time) (int64, error) {
	var enabled bool
	err := store.NoRows(db.QueryRow(ctx, `SELECT enabled FROM webhook_endpoints WHERE partner_id = $1`,
		partner).Scan(&enabled))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return 0, ErrNoEndpoint
	case err != nil:
		return 0, err
	case !enabled:
		return 0, errors.New("the partner's endpoint is disabled: enable it with webhooks set first")
	}
	tag, err := db.Exec(ctx, `UPDATE webhook_events SET status = 'pending', next_attempt_at = now(),
		retry_from = now(), attempts = 0, last_error = NULL, last_status = NULL
		WHERE partner_id = $1 AND occurred_at >= $2 AND status = 'failed'`, partner, since)
	if err != nil {
		return 0, err
	}
	_, err = db.Exec(ctx, `SELECT pg_notify('webhook_events', '')`)
	return tag.RowsAffected(), err
}

// MessageID is the webhook-id of the event with uuid id.
func MessageID(id string) string { return "msg_" + id }
