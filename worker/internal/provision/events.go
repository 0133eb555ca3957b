package provision

import (
	"cmp"
	"context"
	"errors"
	"net/http"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/audit"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/reads"
	"github.com/oneoffice/provisioner/shared/store"
)

// replayEvent makes one of the partner's events of the last 30 days due
// now, in the command's transaction: at its commit the dispatchers are
// notified and send it with its webhook-id, as a new attempt that listEvents
// shows. A delivered or failed event is pending again with a new retry
// window; a pending one is only brought forward. Its earlier attempts stay.
// An attempt in flight meanwhile cannot settle the event (its replay count
// changed): the event is sent again after it.
func (s *Service) replayEvent(ctx context.Context, tx pgx.Tx, c *call, p *protocol.EventRef) (any, error) {
	id := p.ID[len("msg_"):]
	var pk int64
	var enabled *bool
	err := store.NoRows(tx.QueryRow(ctx, `SELECT e.id, w.enabled FROM webhook_events e
		LEFT JOIN webhook_endpoints w ON w.partner_id = e.partner_id
		WHERE e.partner_id = $1 AND e.event_id = $2::uuid AND e.occurred_at >= $3
		FOR UPDATE OF e`, c.partner, id, c.now.Add(-reads.EventWindow)).Scan(&pk, &enabled))
	if errors.Is(err, store.ErrNotFound) {
		return nil, protocol.NewError(http.StatusNotFound, protocol.CodeEventNotFound, "params.id",
			"no event of yours in the last 30 days has id "+p.ID)
	}
	if err != nil {
		return nil, err
	}
	if enabled == nil || !*enabled {
		return nil, protocol.NewError(http.StatusConflict, protocol.CodeConflict, "params.id",
			"your webhook endpoint is disabled: nothing can be sent until it is set again")
	}
	var out protocol.Replayed
	err = tx.QueryRow(ctx, `UPDATE webhook_events SET status = 'pending', next_attempt_at = now(),
		retry_from = CASE WHEN status = 'pending' THEN retry_from ELSE now() END,
		attempts = CASE WHEN status = 'pending' THEN attempts ELSE 0 END,
		delivered_at = NULL, replays = replays + 1 WHERE id = $1
		RETURNING floor(extract(epoch FROM now()))::bigint`, pk).Scan(&out.QueuedAt)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify('webhook_events', '')`); err != nil {
		return nil, err
	}
	// A change a partner makes from the console (or its own client) is on
	// the audit trail with the admin commands, by the key's prefix.
	if err := audit.Record(ctx, tx, audit.Entry{Actor: audit.KeyActor(cmp.Or(keyPrefix(c), "unknown")),
		Action: "replayEvent", Partner: c.partner, Target: p.ID}); err != nil {
		return nil, err
	}
	out.ID, out.Replayed, out.Status = p.ID, true, "pending"
	return out, nil
}

// keyPrefix is the prefix of the key that sent c, "" if unknown.
func keyPrefix(c *call) string {
	if c.cmd == nil {
		return ""
	}
	return c.cmd.KeyPrefix
}
