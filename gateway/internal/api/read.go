package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/reads"
)

// Reader answers the reads from the database (shared/reads).
type Reader interface {
	Answer(ctx context.Context, partner int64, m *protocol.Method, p protocol.Params) (any, error)
}

// read answers a read from the database, beside the command queue (SPEC
// section 2): no idempotency key, no command, no worker; it is answered
// behind any backlog and while no worker runs. Its time limit is
// ReadTimeout, within what is left of RPCTimeout. A database that does not answer in
// time, or cannot be reached, is a 503: nothing was changed, the partner
// retries.
func (h *handler) read(c *fiber.Ctx, cl *call, m *protocol.Method, p protocol.Params) (int, error) {
	left := h.RPCTimeout - h.Now().Sub(cl.start)
	if left <= 0 {
		e := unavailable("the call's time ran out before it was read; nothing was changed, retry later")
		return e.Status, sendError(c, cl.rid, e)
	}
	if h.ReadTimeout > 0 {
		left = min(left, h.ReadTimeout)
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), left)
	defer cancel()
	v, err := h.Reads.Answer(ctx, cl.partner, m, p)
	var body []byte
	if err == nil {
		body, err = json.Marshal(v)
	}
	var apiErr *protocol.Error
	switch {
	case err == nil:
		return http.StatusOK, send(c, http.StatusOK, body)
	case errors.As(err, &apiErr):
		return apiErr.Status, sendError(c, cl.rid, apiErr)
	case reads.Transient(err):
		h.Log.WarnContext(c.UserContext(), "read not answered", "request_id", cl.rid, "method", m.Name, "error", err)
		e := unavailable("the database did not answer in time; nothing was changed, retry later")
		return e.Status, sendError(c, cl.rid, e)
	}
	h.Log.ErrorContext(c.UserContext(), "read failed", "request_id", cl.rid, "method", m.Name, "error", err)
	e := internalError()
	return e.Status, sendError(c, cl.rid, e)
}
