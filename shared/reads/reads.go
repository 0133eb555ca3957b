// Package reads answers the API's reads (getCustomer, getOrder, getRequest,
// getOrders and the lists) from PostgreSQL. The gateway calls it directly, on
// its read pool (READ_DATABASE_URL, a replica where one is configured), so a
// read never waits behind the command queue and is answered while no worker
// runs; a worker answers through the same code a read that still arrives on
// the queue (from a gateway of an earlier release). Every query is scoped by
// the calling partner; reads write nothing.
package reads

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/store"
)

// DB is what the reads need of a pool: a *pgxpool.Pool.
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Config of a Reader.
type Config struct {
	// Pending tells getRequest of a call the gateway answered 202 that no
	// worker recorded yet; nil: such a call is not found.
	Pending func(ctx context.Context, partner int64, requestID string) (idempotency.PendingCall, bool, error)
	// Now is the clock of the order views (expired); nil: time.Now.
	Now func() time.Time
}

// Reader answers the reads of every partner.
type Reader struct {
	db     DB
	cfg    Config
	routes map[string]func(ctx context.Context, q *query, p protocol.Params) (any, error)

	keyMu sync.Mutex
	key   []byte // the cursors' key, read from the database once
}

// query is one read being answered.
type query struct {
	partner int64
	method  string
	now     time.Time
}

// New returns a reader on db.
func New(db DB, cfg Config) *Reader {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Reader{db: db, cfg: cfg, routes: map[string]func(context.Context, *query, protocol.Params) (any, error){}}
	bind(r, protocol.GetCustomerDef, r.getCustomer)
	bind(r, protocol.GetOrderDef, r.getOrder)
	bind(r, protocol.GetRequestDef, r.getRequest)
	bind(r, protocol.ListCustomersDef, r.listCustomers)
	bind(r, protocol.ListOrdersDef, r.listOrders)
	bind(r, protocol.ListUsersDef, r.listUsers)
	bind(r, protocol.ListRequestsDef, r.listRequests)
	bind(r, protocol.GetOrdersDef, r.getOrders)
	bind(r, protocol.ListEventsDef, r.listEvents)
	bind(r, protocol.GetPartnerDef, r.getPartner)
	return r
}

// bind registers h for the read d; binding a method that mutates, or one
// twice, is a programming error and panics when the reader is built.
func bind[P any](r *Reader, d *protocol.Definition[P], h func(ctx context.Context, q *query, p *P) (any, error)) {
	if d.Mutates || r.routes[d.Name] != nil {
		panic(fmt.Sprintf("reads: %q mutates or is bound twice", d.Name))
	}
	r.routes[d.Name] = func(ctx context.Context, q *query, p protocol.Params) (any, error) { return h(ctx, q, p.(*P)) }
}

// Handles reports whether the reader answers method.
func (r *Reader) Handles(method string) bool { return r.routes[method] != nil }

// Answer answers the read m of partner, with params p that m decoded and
// validated. It returns the resource to send with 200, an API refusal
// (*protocol.Error: 400, 404), or a failure (Transient tells whether it may
// pass by itself).
func (r *Reader) Answer(ctx context.Context, partner int64, m *protocol.Method, p protocol.Params) (any, error) {
	h := r.routes[m.Name]
	if h == nil {
		return nil, fmt.Errorf("reads: %q is not a read", m.Name)
	}
	return h(ctx, &query{partner: partner, method: m.Name, now: r.cfg.Now().UTC()}, p)
}

// Transient reports whether a read failed because the database could not be
// reached or answer in time: the caller may retry it, nothing having changed.
func Transient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "53", "57", "58":
			return true
		}
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	var connErr *pgconn.ConnectError
	var opErr *net.OpError
	return errors.Is(err, context.DeadlineExceeded) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.As(err, &connErr) || errors.As(err, &opErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)
}

func notFound(code, field, what, id string) *protocol.Error {
	return protocol.NewError(http.StatusNotFound, code, field, fmt.Sprintf("%s %q does not exist", what, id))
}

// noRows maps pgx's no-rows error to store.ErrNotFound.
var noRows = store.NoRows
