package reads

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// EventWindow is how far back listEvents and replayEvent reach (SPEC
// section 2: the events of the last 30 days).
const EventWindow = 30 * 24 * time.Hour

// getPartner reads the calling partner's name.
func (r *Reader) getPartner(ctx context.Context, q *query, _ *protocol.NoParams) (any, error) {
	p := protocol.Partner{ID: q.partner}
	err := r.db.QueryRow(ctx, `SELECT name FROM partners WHERE id = $1`, q.partner).Scan(&p.Name)
	return p, err
}

// listEvents lists the partner's webhook events of the last EventWindow, by
// (occurrence time, event id), each with its delivery attempts.
func (r *Reader) listEvents(ctx context.Context, q *query, p *protocol.ListEventsParams) (any, error) {
	filters := []any{p.Type, p.Since, p.RequestID}
	after, err := r.decodeCursor(ctx, q, p.Cursor, filters...)
	if err != nil {
		return nil, err
	}
	var w where
	w.add("partner_id = ?", q.partner)
	w.add("occurred_at >= ?", q.now.Add(-EventWindow))
	if p.Type != nil {
		w.add("event_type = ?", *p.Type)
	}
	if p.Since != nil {
		w.add("occurred_at >= ?", time.Unix(int64(*p.Since), 0))
	}
	if p.RequestID != nil {
		w.add("request_id = ?", *p.RequestID)
	}
	if after != nil {
		w.add("(occurred_at, event_id) > (?, ?::uuid)", time.UnixMicro(after.N), after.S)
	}
	limit := pageLimit(p.Limit)
	rows, err := r.db.Query(ctx, `SELECT id, event_id::text, event_type, request_id, order_id, occurred_at,
		status, body FROM webhook_events WHERE `+w.String()+`
		ORDER BY occurred_at, event_id LIMIT `+w.limitArg(limit), w.args...)
	if err != nil {
		return nil, err
	}
	type eventRow struct {
		protocol.Event
		pk       int64
		uuid     string
		occurred time.Time
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (eventRow, error) {
		var e eventRow
		var body string
		err := row.Scan(&e.pk, &e.uuid, &e.Type, &e.RequestID, &e.OrderID, &e.occurred, &e.Status, &body)
		e.ID, e.OccurredAt, e.Payload = "msg_"+e.uuid, e.occurred.Unix(), json.RawMessage(body)
		e.Attempts = []protocol.Attempt{}
		return e, err
	})
	if err != nil {
		return nil, err
	}
	pg, err := paginate(ctx, r, q, list, limit, func(e eventRow) position {
		return position{N: e.occurred.UnixMicro(), S: e.uuid}
	}, filters...)
	if err != nil {
		return nil, err
	}
	out := protocol.EventPage{Data: make([]protocol.Event, len(pg.Data)), NextCursor: pg.NextCursor}
	if len(pg.Data) == 0 {
		return out, nil
	}
	at := make(map[int64]int, len(pg.Data))
	pks := make([]int64, len(pg.Data))
	for i, e := range pg.Data {
		out.Data[i], at[e.pk], pks[i] = e.Event, i, e.pk
	}
	rows, err = r.db.Query(ctx, `SELECT event_pk, at, status, duration_ms, error FROM webhook_attempts
		WHERE event_pk = ANY ($1) ORDER BY event_pk, at, id`, pks)
	if err != nil {
		return nil, err
	}
	var pk int64
	var t time.Time
	var a protocol.Attempt
	var status *int16
	_, err = pgx.ForEachRow(rows, []any{&pk, &t, &status, &a.DurationMs, &a.Error}, func() error {
		a.At, a.Status = t.Unix(), nil
		if status != nil {
			s := int(*status)
			a.Status = &s
		}
		i := at[pk]
		out.Data[i].Attempts = append(out.Data[i].Attempts, a)
		a.Error = nil
		return nil
	})
	return out, err
}
