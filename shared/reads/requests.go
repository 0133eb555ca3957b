package reads

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/store"
)

// Request is the getRequest response: one of the partner's calls as the
// ledger recorded it.
type Request struct {
	RequestID   string    `json:"requestId"`
	Method      string    `json:"method"`
	Status      string    `json:"status"` // pending, succeeded or failed
	Response    *Response `json:"response"`
	CreatedAt   int64     `json:"createdAt"`
	CompletedAt *int64    `json:"completedAt"`
	TraceID     *string   `json:"traceId,omitempty"`
}

// Response is the answer a call got: its HTTP status and its body.
type Response struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// getRequest reads the partner's call by its request id. A request id the
// partner reused names its latest call. A call the gateway answered 202 and
// no worker recorded yet is pending; a read, which the ledger does not record,
// a call answered by the gateway alone (a replay from Redis, a refusal before
// the queue) and another partner's call are not found.
func (r *Reader) getRequest(ctx context.Context, q *query, p *protocol.RequestRef) (any, error) {
	rid := p.ID
	req := Request{RequestID: rid}
	var created, completed time.Time
	var res Response
	err := noRows(r.db.QueryRow(ctx, `SELECT method, status, response_status, response_body,
		created_at, completed_at, trace_id FROM command_ledger WHERE partner_id = $1 AND request_id = $2
		ORDER BY created_at DESC LIMIT 1`, q.partner, rid).
		Scan(&req.Method, &req.Status, &res.Status, &res.Body, &created, &completed, &req.TraceID))
	if err == nil {
		done := completed.Unix()
		req.Response, req.CreatedAt, req.CompletedAt = &res, created.Unix(), &done
		return req, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if r.cfg.Pending != nil {
		pc, ok, err := r.cfg.Pending(ctx, q.partner, rid)
		if err != nil {
			return nil, err
		}
		if ok {
			req.Method, req.Status, req.CreatedAt = pc.Method, "pending", pc.At.Unix()
			return req, nil
		}
	}
	return nil, protocol.NewError(http.StatusNotFound, protocol.CodeRequestNotFound, "params.id",
		"no call of yours has request id "+jsonQuote(rid))
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// listRequests lists the partner's calls that the ledger recorded (every
// command a worker completed: a call still pending is not listed), by
// (creation time, command id): the time the gateway took the call.
func (r *Reader) listRequests(ctx context.Context, q *query, p *protocol.ListRequestsParams) (any, error) {
	filters := []any{p.Method, p.Status, p.Since}
	after, err := r.decodeCursor(ctx, q, p.Cursor, filters...)
	if err != nil {
		return nil, err
	}
	var w where
	w.add("partner_id = ?", q.partner)
	if p.Method != nil {
		w.add("method = ?", *p.Method)
	}
	if p.Status != nil {
		w.add("status = ?", *p.Status)
	}
	if p.Since != nil {
		w.add("created_at >= ?", time.Unix(int64(*p.Since), 0))
	}
	if after != nil {
		w.add("(created_at, command_id) > (?, ?)", time.UnixMicro(after.N), after.S)
	}
	limit := pageLimit(p.Limit)
	rows, err := r.db.Query(ctx, `SELECT request_id, method, status, response_status, response_body,
		created_at, completed_at, command_id, trace_id FROM command_ledger WHERE `+w.String()+`
		ORDER BY created_at, command_id LIMIT `+w.limitArg(limit), w.args...)
	if err != nil {
		return nil, err
	}
	type callRow struct {
		Request
		created time.Time
		command string
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (callRow, error) {
		var c callRow
		var res Response
		var completed time.Time
		err := row.Scan(&c.RequestID, &c.Method, &c.Status, &res.Status, &res.Body, &c.created, &completed, &c.command, &c.TraceID)
		done := completed.Unix()
		c.Response, c.CreatedAt, c.CompletedAt = &res, c.created.Unix(), &done
		return c, err
	})
	if err != nil {
		return nil, err
	}
	pg, err := paginate(ctx, r, q, list, limit, func(c callRow) position {
		return position{N: c.created.UnixMicro(), S: c.command}
	}, filters...)
	if err != nil {
		return nil, err
	}
	out := Page[Request]{Data: make([]Request, len(pg.Data)), NextCursor: pg.NextCursor}
	for i, c := range pg.Data {
		out.Data[i] = c.Request
	}
	return out, nil
}
