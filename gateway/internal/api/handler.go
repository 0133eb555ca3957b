package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"

	"github.com/oneoffice/provisioner/gateway/internal/rpc"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/logging"
	"github.com/oneoffice/provisioner/shared/protocol"
)

type handler struct {
	Deps
	limits *limiter
	admit  *admitter // nil: admission control off
}

// call is what one request learned, for its metrics and its log line.
type call struct {
	rid, method, idem string
	partner           int64
	start             time.Time // when the call arrived: RPCTimeout counts from it
	// drained reports that the body was read to its end: nothing is left on
	// the connection for discardBody.
	drained bool
}

func (h *handler) serve(c *fiber.Ctx) (err error) {
	start := time.Now()
	h.Metrics.inFlight.Inc()
	h.Metrics.calls.Add(1)
	cl := &call{rid: requestID(c), method: "unknown", start: h.Now()}
	span := h.startSpan(c)
	status := http.StatusInternalServerError
	defer func() {
		// A panic anywhere in a call is that call's 500, with its request id;
		// the process and every other call go on.
		if r := recover(); r != nil {
			h.Metrics.panics.Inc()
			h.Log.ErrorContext(c.UserContext(), "panic answering a call", "request_id", cl.rid,
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			status, err = http.StatusInternalServerError, sendError(c, cl.rid, internalError())
		}
		if !cl.drained {
			discardBody(c)
		}
		h.Metrics.inFlight.Dec()
		h.Metrics.calls.Add(-1)
		elapsed := time.Since(start)
		h.Metrics.observe(cl.method, status, elapsed.Seconds(), span)
		logging.Attrs(c.UserContext(), h.Log, slog.LevelInfo, "request", slog.String("request_id", cl.rid),
			slog.Int64("partner", cl.partner), slog.String("method", cl.method), slog.Int("status", status),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000), slog.String("idempotency", cl.idem))
		endSpan(span, cl, status)
	}()
	status, err = h.handle(c, cl)
	return err
}

// handle answers the call and returns the status it sent.
func (h *handler) handle(c *fiber.Ctx, cl *call) (int, error) {
	fail := func(e *protocol.Error) (int, error) { return e.Status, sendError(c, cl.rid, e) }
	key := apiKey(c)
	k, err := h.Auth.Key(c.UserContext(), key, h.limits.admit(c))
	if err != nil {
		return fail(h.keyCheckFailed(c, err))
	}
	partner := k.Partner
	if partner == 0 {
		reason := "invalid"
		if key == "" {
			reason = "missing"
		}
		h.Metrics.authFail.WithLabelValues(reason).Inc()
		return fail(protocol.NewError(http.StatusUnauthorized, protocol.CodeUnauthorized, "",
			"send a valid API key in the x-api-key header (or Authorization: Bearer)"))
	}
	cl.partner = partner
	markKey(c, k)
	if e := h.limitPartner(c, partner); e != nil {
		return fail(e)
	}
	if n := c.Request().Header.Len(); n > MaxHeaders {
		return fail(protocol.NewError(http.StatusRequestHeaderFieldsTooLarge, protocol.CodeHeadersTooLarge, "",
			fmt.Sprintf("the call has %d headers; at most %d are accepted", n, MaxHeaders)))
	}
	// Signatures are over the body as sent, so they are checked before it
	// is inflated or parsed, and a refused call costs no decoding.
	raw, perr := readRaw(c)
	if perr != nil {
		return fail(perr)
	}
	cl.drained = true
	header := func(name string) string { return c.Get(name) }
	if e := h.Signing.Verify(c.UserContext(), partner, header, raw); e != nil {
		return fail(e)
	}
	body, perr := decodeBody(c, raw)
	if perr != nil {
		return fail(perr)
	}
	method, raw, perr := parseEnvelope(body)
	if method != nil {
		cl.method = method.Name
	}
	if perr != nil {
		return fail(perr)
	}
	if k.ReadOnly && writes(method) {
		// Before the params, the key and the publish: nothing is held,
		// nothing enqueued.
		return fail(protocol.NewError(http.StatusForbidden, protocol.CodeForbiddenForKey, "method",
			fmt.Sprintf("this key is read-only: %s changes something; use a key with full access", method.Name)))
	}
	params, perr := method.Decode(raw)
	if perr != nil {
		return fail(perr)
	}
	if !method.Mutates && h.Reads != nil {
		return h.read(c, cl, method, params)
	}
	// One command id per call: the worker's ledger knows a redelivery by it.
	cmd := &protocol.Command{CommandID: uuid.NewString(), Method: method.Name, Def: method, Partner: partner, Test: !k.Live, KeyPrefix: k.Prefix, RequestID: cl.rid,
		Params: protocol.Canonical(params), Timestamp: time.Now()}
	if h.admit != nil {
		// Refused before the key is taken and the command sent: nothing held,
		// nothing enqueued.
		reason, ok := h.admit.acquire(partner)
		if !ok {
			h.Metrics.overloadRefusals.WithLabelValues(reason).Inc()
			return fail(overloaded(c))
		}
		admitted := h.Now()
		sent, status := false, 0
		defer func() {
			// A 503 from dispatch is the broker's, not a measure of latency.
			sampled := sent && status != http.StatusServiceUnavailable
			h.admit.release(partner, sampled, h.Now().Sub(admitted), status == http.StatusAccepted)
		}()
		if done, st, err := h.takeKey(c, cl, method, cmd, params); done {
			return st, err
		}
		sent = true
		st, err := h.dispatch(c, cl, cmd)
		status = st
		return st, err
	}
	if done, status, err := h.takeKey(c, cl, method, cmd, params); done {
		return status, err
	}
	return h.dispatch(c, cl, cmd)
}

// DefaultAcquireTimeout bounds taking an idempotency key in Redis, which
// answers in a millisecond: past it Redis is taken for unreachable and the
// call is answered 503 with nothing done, within a second, rather than held
// while its connection times out or is dialed again.
const DefaultAcquireTimeout = 750 * time.Millisecond

// takeKey applies SPEC section 3 before the command is sent. done reports that
// the call was answered here (replayed, in progress, mismatch or Redis down).
func (h *handler) takeKey(c *fiber.Ctx, cl *call, method *protocol.Method, cmd *protocol.Command, params protocol.Params) (done bool, status int, err error) {
	if !method.Keyed() {
		return false, 0, nil
	}
	key, derived := c.Get("Idempotency-Key"), false
	if key != "" && !idempotency.ValidHeaderKey(key) {
		e := protocol.NewError(http.StatusBadRequest, protocol.CodeInvalidRequest, "Idempotency-Key",
			"the Idempotency-Key header must be 1 to 255 printable ASCII characters")
		return true, e.Status, sendError(c, cl.rid, e)
	}
	if key == "" {
		key, derived = method.Key(params), true
	}
	if key == "" {
		return false, 0, nil
	}
	cmd.IdemKey = idempotency.Key(cmd.Partner, key, derived)
	cmd.IdemToken = idempotency.NewToken()
	cmd.IdemFP = idempotency.Fingerprint(cmd.Method, cmd.Params)
	actx, cancel := context.WithTimeout(c.UserContext(), cmp.Or(h.AcquireTimeout, DefaultAcquireTimeout))
	outcome, rec, err := h.Idem.Acquire(actx, cmd.IdemKey, cmd.IdemToken, cmd.IdemFP)
	cancel()
	if err != nil {
		e := unavailable("the idempotency store is unreachable; nothing was done")
		return true, e.Status, sendError(c, cl.rid, e)
	}
	cl.idem = outcome.String()
	h.Metrics.idempotencyOutcome(outcome)
	var e *protocol.Error
	switch outcome {
	case idempotency.New:
		return false, 0, nil
	case idempotency.Replay:
		event(c.UserContext(), "idempotent replay", attribute.Int("oneoffice.replayed_status", rec.Status))
		c.Set("Idempotent-Replayed", "true")
		return true, rec.Status, send(c, rec.Status, rec.Body)
	case idempotency.InProgress:
		e = protocol.NewError(http.StatusConflict, protocol.CodeRequestInProgress, "",
			"the same call is still being processed; retry shortly for its result")
	case idempotency.Mismatch:
		e = protocol.KeyReused(derived, method.KeyField)
	}
	return true, e.Status, sendError(c, cl.rid, e)
}

// dispatch sends the command and answers with its result, 202 or 503. This
// is the one place where the RPC client's error kinds become statuses:
//
//	nil                 the worker's result, its status and body
//	rpc.ErrTimeout      202 pending: enqueued, no reply in time; key kept
//	rpc.ErrUnknown      202 pending: written, not confirmed in time (or
//	                    nacked or lost with its connection until the
//	                    deadline); the command may run, so its key is kept
//	                    and a retry is told 409 request_in_progress, then
//	                    the result
//	rpc.ErrUnavailable  503 unavailable: surely not enqueued (not connected,
//	                    broker blocked, returned unroutable); the key is
//	                    released
//
// RPCTimeout bounds the whole call, not only the wait for the worker: what
// the call already spent (a key lookup in PostgreSQL, Redis slow or
// reconnecting) is taken off the RPC's deadline, so no partner waits past
// RPCTimeout for a 202 (SPEC section 5). A call with nothing left of it is
// not sent: 503, nothing done.
func (h *handler) dispatch(c *fiber.Ctx, cl *call, cmd *protocol.Command) (int, error) {
	var res protocol.Result
	err := errNoTimeLeft
	if left := h.RPCTimeout - h.Now().Sub(cl.start); left > 0 {
		res, err = h.RPC.Call(c.UserContext(), cmd, left)
	}
	switch {
	case err == nil:
		if res.Replayed { // answered from the worker's ledger, Redis having lost the record
			event(c.UserContext(), "idempotent replay", attribute.String("oneoffice.replayed_from", "ledger"))
			c.Set("Idempotent-Replayed", "true")
		}
		return res.Status, send(c, res.Status, res.Body)
	case errors.Is(err, rpc.ErrTimeout), errors.Is(err, rpc.ErrUnknown):
		if errors.Is(err, rpc.ErrUnknown) {
			h.Log.WarnContext(c.UserContext(), "command sent, outcome unknown", "request_id", cl.rid, "error", err)
		}
		event(c.UserContext(), "answered 202 pending", attribute.String("oneoffice.pending_reason", err.Error()))
		h.Metrics.pending.WithLabelValues(cmd.Method).Inc()
		h.markPending(c, cl, cmd)
		return http.StatusAccepted, send(c, http.StatusAccepted, protocol.PendingBody(cl.rid))
	default:
		h.Log.WarnContext(c.UserContext(), "command not enqueued", "request_id", cl.rid, "error", err)
		if cmd.IdemKey != "" {
			// Nothing was enqueued: free the key so the partner's retry runs.
			// A failed release only delays the retry: the record expires with
			// its lock's time limit, and the retry meanwhile is told 409.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := h.Idem.Release(ctx, cmd.IdemKey, cmd.IdemToken, cmd.IdemFP); err != nil {
				h.Log.WarnContext(c.UserContext(), "idempotency key not released", "request_id", cl.rid, "error", err)
			}
		}
		e := unavailable("the message broker is unreachable or refusing commands; nothing was done, retry later")
		if errors.Is(err, errNoTimeLeft) {
			e = unavailable("the call's time ran out before its command was sent; nothing was done, retry later")
		}
		return e.Status, sendError(c, cl.rid, e)
	}
}

// errNoTimeLeft: the call spent its RPCTimeout before its command was sent.
var errNoTimeLeft = fmt.Errorf("%w: no time left to send the command", rpc.ErrUnavailable)

// markPending records the 202 so that getRequest answers "pending" until
// the worker records the call. A failure only costs that: getRequest then
// answers 404 until the call is recorded, and the call itself is unaffected.
func (h *handler) markPending(c *fiber.Ctx, cl *call, cmd *protocol.Command) {
	if h.Idem == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := h.Idem.MarkPending(ctx, cmd.Partner, cl.rid, cmd.Method, cmd.Timestamp); err != nil {
		h.Log.WarnContext(c.UserContext(), "202 not marked pending", "request_id", cl.rid, "error", err)
	}
}

func unavailable(msg string) *protocol.Error {
	return protocol.NewError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "", msg)
}

// apiKey reads x-api-key, else Authorization: Bearer.
func apiKey(c *fiber.Ctx) string {
	if k := c.Get("x-api-key"); k != "" {
		return strings.Clone(k)
	}
	a := c.Get(fiber.HeaderAuthorization)
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.Clone(strings.TrimSpace(a[7:]))
	}
	return ""
}

// requestID returns the partner's X-Request-Id (1-128 printable ASCII) or a
// new one, and sets it on the response. A call has one request id, however
// many times it is asked for.
func requestID(c *fiber.Ctx) string {
	if rid, ok := c.Locals(ridKey{}).(string); ok {
		return rid
	}
	rid := c.Get(fiber.HeaderXRequestID)
	if rid == "" || len(rid) > 128 || !printable(rid) {
		rid = uuid.NewString()
	} else {
		rid = strings.Clone(rid)
	}
	c.Set(fiber.HeaderXRequestID, rid)
	c.Locals(ridKey{}, rid)
	return rid
}

// ridKey holds the call's request id among the Fiber context's locals.
type ridKey struct{}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
