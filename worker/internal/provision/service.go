// Package provision runs the API methods against PostgreSQL: customers (tenants
// with their storage), orders with their terms and renewals, and the users of a
// partner's consumer tenant. Every query is scoped by partner. Unique constraints
// make a duplicate or redelivered command return the existing resource (same
// params) or 409 (other params), never a second row.
package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// Config of the provisioning service.
type Config struct {
	StorageRoot   string        // directory under which each tenant gets its own
	RenewalWindow time.Duration // a renewal is refused while more is left on the term
}

// Service runs commands.
type Service struct {
	db  *pgxpool.Pool
	cfg Config
	now func() time.Time
	// mkdir makes this process create one tenant directory at a time: a
	// directory insert holds the parent's lock in the kernel, and threads
	// waiting for it spin on the CPU, while goroutines waiting here sleep. On
	// ext4 this halved the CPU per directory with 32 commands running.
	mkdir sync.Mutex
	// customers groups the createCustomer inserts of concurrent commands.
	customers *inserter
	mux       *mux
}

// New returns a service on db.
func New(db *pgxpool.Pool, cfg Config, m *Metrics) *Service {
	s := &Service{db: db, cfg: cfg, now: func() time.Time { return time.Now().UTC() },
		customers: newInserter(db, m.insertRows), mux: newMux()}
	s.routes(s.mux)
	return s
}

// routes registers the handler of every API method.
func (s *Service) routes(m *mux) {
	m.handle(protocol.CreateCustomer, s.createCustomer)
	m.handle(protocol.GetCustomer, s.getCustomer)
	m.handle(protocol.CreateFirstOrder, s.createFirstOrder)
	m.handle(protocol.CreateRenewalOrder, s.createRenewalOrder)
	m.handle(protocol.CancelOrder, s.cancelOrder)
	m.handle(protocol.SuspendOrder, s.suspendOrder)
	m.handle(protocol.ResumeOrder, s.resumeOrder)
	m.handle(protocol.UpdateOrder, s.updateOrder)
	m.handle(protocol.GetOrder, s.getOrder)
	m.handle(protocol.CreateUser, s.createUser)
	m.handle(protocol.DeleteUser, s.deleteUser)
	m.handle(protocol.ResetUser, s.resetUser)
}

// call is one command being run: its partner, validated params and fingerprint.
type call struct {
	partner int64
	method  string
	params  protocol.Params
	fp      string
	now     time.Time
}

// ErrInvalidCommand marks a command whose params do not validate: the gateway
// never sends one, so it is dead-lettered rather than answered.
var ErrInvalidCommand = errors.New("invalid command")

// Handle runs one command and returns the partner's answer. An API error (404,
// 409, 422) is a result, not an error; the error is for failures, which
// IsTransient classifies.
func (s *Service) Handle(ctx context.Context, cmd *protocol.Command) (protocol.Result, error) {
	params, perr := protocol.DecodeParams(cmd.Method, cmd.Params)
	if perr != nil {
		return errorResult(perr, cmd.RequestID), fmt.Errorf("%w: %v", ErrInvalidCommand, perr)
	}
	h, ok := s.mux.handler(cmd.Method)
	if !ok {
		return protocol.Result{}, fmt.Errorf("%w: no handler for %q", ErrInvalidCommand, cmd.Method)
	}
	c := &call{
		partner: cmd.Partner, method: cmd.Method, params: params, now: s.now(),
		fp: idempotency.Fingerprint(cmd.Method, protocol.Canonical(params)),
	}
	v, err := h(ctx, c)
	var apiErr *protocol.Error
	if errors.As(err, &apiErr) {
		return errorResult(apiErr, cmd.RequestID), nil
	}
	if err != nil {
		return protocol.Result{}, err
	}
	body, err := json.Marshal(v)
	if err != nil {
		return protocol.Result{}, fmt.Errorf("encode %s result: %w", cmd.Method, err)
	}
	return protocol.Result{Status: http.StatusOK, Body: body}, nil
}

func errorResult(e *protocol.Error, requestID string) protocol.Result {
	return protocol.Result{Status: e.Status, Body: e.Body(requestID)}
}

// querier is what a pool and a transaction have in common.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// inTx runs fn in a transaction, committed when fn returns nil and rolled back
// otherwise, API errors included: a refused command leaves nothing behind.
func (s *Service) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.db, fn)
}

func notFound(code, field, what, id string) *protocol.Error {
	return protocol.NewError(http.StatusNotFound, code, field,
		fmt.Sprintf("%s %q does not exist", what, id))
}

func conflict(code, field, msg string) *protocol.Error {
	return protocol.NewError(http.StatusConflict, code, field, msg)
}
