// Package api is the gateway's HTTP API (SPEC section 1): one endpoint, /, for
// GET and POST with the JSON envelope. It authenticates the call, validates the
// params, takes the idempotency key, sends the command to a worker and answers
// with the worker's result, or 202 when the worker does not answer in time.
package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/gateway/internal/console"
	"github.com/oneoffice/provisioner/gateway/internal/openapi"
	"github.com/oneoffice/provisioner/gateway/internal/signing"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/tracing"
)

// BodyLimit is the largest request body accepted (413 beyond), as sent and
// again once its Content-Encoding is undone. The server streams bodies, so
// the handler enforces it after authentication while reading (body.go).
const BodyLimit = protocol.MaxBody

// Header limits: the request line and headers must fit in HeaderBytes (431
// beyond, from the HTTP server), and a call may carry at most MaxHeaders
// headers (431 from the handler).
const (
	HeaderBytes = 8 << 10
	MaxHeaders  = 64
)

// Server timeouts: a slow client cannot pin a connection.
const (
	ReadTimeout  = 10 * time.Second
	WriteTimeout = 10 * time.Second
	IdleTimeout  = 60 * time.Second
)

// RPC sends a command and waits for its result.
type RPC interface {
	Call(ctx context.Context, cmd *protocol.Command, deadline time.Duration) (protocol.Result, error)
}

// Deps are what the API calls.
type Deps struct {
	Auth *auth.Cache
	Idem *idempotency.Store
	RPC  RPC
	// Reads answers the methods that change nothing, from the database;
	// nil sends them to the workers as commands.
	Reads      Reader
	Log        *slog.Logger
	Metrics    *Metrics
	RPCTimeout time.Duration
	// AcquireTimeout bounds taking an idempotency key in Redis; zero is
	// DefaultAcquireTimeout.
	AcquireTimeout time.Duration
	// ReadTimeout bounds a read's wait for the database, within what is left
	// of RPCTimeout; zero is no bound but that.
	ReadTimeout time.Duration
	// RateLimit is calls per second per partner, shared by every gateway on
	// Redis; 0 = off. It needs Redis.
	RateLimit float64
	Redis     *redis.Client
	// ClientRateLimit is lookups of unknown keys per second per client
	// address, in this process; 0 = off.
	ClientRateLimit float64
	// Signing checks the signatures of partners that sign (SPEC section 6);
	// nil checks none.
	Signing *signing.Verifier
	// Admission bounds the calls in flight (admit.go); zero: no bound.
	Admission Admission
	// Tracing makes the call's server span; nil is off.
	Tracing *tracing.Provider
	// Now is the clock RPCTimeout counts on; nil is time.Now. Tests set it
	// to spend a call's budget without waiting.
	Now func() time.Time
}

// New builds the Fiber app.
func New(d Deps) *fiber.App {
	if d.Now == nil {
		d.Now = time.Now
	}
	h := &handler{Deps: d, limits: newLimiter(d), admit: newAdmitter(d.Admission, d.Metrics)}
	app := fiber.New(fiber.Config{
		AppName: "oneoffice-gateway",
		// With streaming, BodyLimit only bounds what the server reads ahead
		// (at most 8 KiB); readRaw reads the rest and enforces the limit.
		StreamRequestBody:     true,
		BodyLimit:             BodyLimit,
		ReadBufferSize:        HeaderBytes,
		ReadTimeout:           ReadTimeout,
		WriteTimeout:          WriteTimeout,
		IdleTimeout:           IdleTimeout,
		DisableStartupMessage: true,
		ErrorHandler:          h.fiberError,
	})
	// Add, not Get: Fiber's Get also routes HEAD, which is a 405 here.
	app.Add(fiber.MethodGet, "/", h.serve)
	app.Add(fiber.MethodPost, "/", h.serve)
	app.Add(fiber.MethodGet, "/openapi.json", serveContract)
	console.Register(app) // the partner console: GET /console and its files
	app.Use(func(c *fiber.Ctx) error {
		status, code := http.StatusNotFound, protocol.CodeNotFound
		msg := "the API has one endpoint, /, called with GET or POST"
		if c.Path() == "/" {
			status, code = http.StatusMethodNotAllowed, protocol.CodeMethodNotAllowed
			c.Set(fiber.HeaderAllow, "GET, POST")
		}
		return sendError(c, requestID(c), protocol.NewError(status, code, "", msg))
	})
	return app
}

// fiberError answers errors raised before the handler runs, such as a body
// over the limit, with the API's error envelope.
func (h *handler) fiberError(c *fiber.Ctx, err error) error {
	e := protocol.NewError(http.StatusInternalServerError, protocol.CodeInternal, "", "internal error")
	var fe *fiber.Error
	if errors.As(err, &fe) {
		e.Status, e.Message = fe.Code, strings.ToLower(fe.Message[:1])+fe.Message[1:]
		e.Code = protocol.CodeInvalidRequest
		switch fe.Code {
		case http.StatusRequestEntityTooLarge:
			e = tooLarge()
		case http.StatusRequestHeaderFieldsTooLarge:
			e.Code = protocol.CodeHeadersTooLarge
			e.Message = fmt.Sprintf("the request line and headers are larger than the %d KiB limit", HeaderBytes>>10)
		}
	}
	h.Metrics.count("unknown", e.Status)
	return sendError(c, requestID(c), e)
}

func internalError() *protocol.Error {
	return protocol.NewError(http.StatusInternalServerError, protocol.CodeInternal, "",
		"the call failed inside the service; quote the request id when you report it")
}

func tooLarge() *protocol.Error {
	return protocol.NewError(http.StatusRequestEntityTooLarge, protocol.CodeBodyTooLarge, "",
		"the body is larger than the 64 KiB limit")
}

func sendError(c *fiber.Ctx, rid string, e *protocol.Error) error {
	return send(c, e.Status, e.Body(rid))
}

// send writes every answer of the API, errors included: none may be cached.
func send(c *fiber.Ctx, status int, body []byte) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Status(status)
	return sendBody(c, body)
}

// contractETag identifies the OpenAPI document this binary serves.
var contractETag = fmt.Sprintf(`"%x"`, sha256.Sum256(openapi.JSON))

// serveContract answers GET /openapi.json with the OpenAPI document (SPEC
// section 8b), without a key: it holds nothing secret. It is the same for
// as long as this binary runs, so a client may keep it and revalidate.
func serveContract(c *fiber.Ctx) error {
	c.Set(fiber.HeaderETag, contractETag)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	if c.Get(fiber.HeaderIfNoneMatch) == contractETag {
		return c.SendStatus(http.StatusNotModified)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(http.StatusOK).Send(openapi.JSON)
}
