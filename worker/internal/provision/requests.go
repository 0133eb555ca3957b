package provision

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
func (s *Service) getRequest(ctx context.Context, _ pgx.Tx, c *call, p *protocol.RequestRef) (any, error) {
	rid := p.ID
	r := Request{RequestID: rid}
	var created, completed time.Time
	var res Response
	err := store.NoRows(s.db.QueryRow(ctx, `SELECT method, status, response_status, response_body,
		created_at, completed_at FROM command_ledger WHERE partner_id = $1 AND request_id = $2
		ORDER BY created_at DESC LIMIT 1`, c.partner, rid).
		Scan(&r.Method, &r.Status, &res.Status, &res.Body, &created, &completed))
	if err == nil {
		done := completed.Unix()
		r.Response, r.CreatedAt, r.CompletedAt = &res, created.Unix(), &done
		return r, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if s.cfg.Pending != nil {
		p, ok, err := s.cfg.Pending(ctx, c.partner, rid)
		if err != nil {
			return nil, err
		}
		if ok {
			r.Method, r.Status, r.CreatedAt = p.Method, "pending", p.At.Unix()
			return r, nil
		}
	}
	return nil, protocol.NewError(http.StatusNotFound, protocol.CodeRequestNotFound, "params.id",
		"no call of yours has request id "+jsonQuote(rid))
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
