// Package provision runs the API methods against PostgreSQL: customers (tenants
// with their storage), orders with their terms and renewals, and the users of a
// partner's consumer tenant. Every query is scoped by partner. Unique constraints
// make a duplicate or redelivered command return the existing resource (same
// params) or 409 (other params), never a second row.
package provision

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/reads"
)

// Config of the provisioning service.
type Config struct {
	StorageRoot   string        // directory under which each tenant gets its own
	RenewalWindow time.Duration // a renewal is refused while more is left on the term
	// OrphanGrace is how long the sweeper leaves a tenant directory that no
	// tenant row records after it was last made or reused; zero:
	// DefaultOrphanGrace.
	OrphanGrace time.Duration
	// KeyTTL is how long the ledger answers for an idempotency key, as Redis
	// keeps a result (IDEMPOTENCY_TTL); zero: as long as the row is kept.
	KeyTTL time.Duration
	// Pending tells getRequest of a call the gateway answered 202 that no
	// worker recorded yet; nil: such a call is not found.
	Pending func(ctx context.Context, partner int64, requestID string) (idempotency.PendingCall, bool, error)
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
	fs    fileSystem
	// customers groups the createCustomer inserts of concurrent commands.
	customers *inserter
	reads     *reads.Reader
	mux       *mux
	m         *Metrics
}

// New returns a service on db.
func New(db *pgxpool.Pool, cfg Config, m *Metrics) *Service {
	cfg.OrphanGrace = cmp.Or(cfg.OrphanGrace, DefaultOrphanGrace)
	s := &Service{db: db, cfg: cfg, now: func() time.Time { return time.Now().UTC() }, fs: osFileSystem,
		customers: newInserter(db, m.insertRows), mux: newMux(), m: m}
	s.reads = reads.New(db, reads.Config{Pending: cfg.Pending, Now: func() time.Time { return s.now() }})
	s.routes(s.mux)
	return s
}

// routes binds every API method to its handler: how it runs, and the
// function of its params.
func (s *Service) routes(m *mux) {
	handle(m, protocol.CreateCustomerDef, batched, s.createCustomer)
	handle(m, protocol.CreateFirstOrderDef, inTx, s.createFirstOrder)
	handle(m, protocol.CreateRenewalOrderDef, inTx, s.createRenewalOrder)
	handle(m, protocol.CancelOrderDef, inTx, s.cancelOrder)
	handle(m, protocol.SuspendOrderDef, inTx, s.suspendOrder)
	handle(m, protocol.ResumeOrderDef, inTx, s.resumeOrder)
	handle(m, protocol.UpdateOrderDef, inTx, s.updateOrder)
	handle(m, protocol.CreateUserDef, inTx, s.createUser)
	handle(m, protocol.DeleteUserDef, inTx, s.deleteUser)
	handle(m, protocol.ResetUserDef, inTx, s.resetUser)
	handle(m, protocol.ReplayEventDef, inTx, s.replayEvent)
	// Every read is answered by shared/reads, the code the gateway answers
	// it with: a read still arrives here from a gateway of an earlier
	// release.
	for _, d := range protocol.Methods() {
		if !d.Mutates && s.reads.Handles(d.Name) {
			handleRead(m, d, func(ctx context.Context, c *call) (any, error) {
				return s.reads.Answer(ctx, c.partner, c.def, c.params)
			})
		}
	}
}

// call is one command being run: its partner, method, validated params and
// fingerprint.
type call struct {
	partner int64
	def     *protocol.Method
	params  protocol.Params
	fp      string
	now     time.Time
	cmd     *protocol.Command
	// taken reports that createCustomer's shared statement found the id
	// taken: the command's transaction only reads the existing customer.
	taken bool
	// ended lists the idempotency records the command ended.
	ended []string
}

// ErrInvalidCommand marks a command whose params do not validate: the gateway
// never sends one, so it is dead-lettered rather than answered.
var ErrInvalidCommand = errors.New("invalid command")

// Handle runs one command and returns the partner's answer. An API error (404,
// 409, 422) is a result, not an error; the error is for failures, which
// IsTransient classifies. A mutating command runs through the ledger
// (runCommand); a read writes nothing.
func (s *Service) Handle(ctx context.Context, cmd *protocol.Command) (protocol.Result, error) {
	rt, ok := s.mux.route(cmd.Method)
	if !ok {
		return protocol.Result{}, fmt.Errorf("%w: no handler for %q", ErrInvalidCommand, cmd.Method)
	}
	params, fp := cmd.Decoded, cmd.IdemFP
	if params == nil || fp == "" {
		// Not verified against a fingerprint yet (an un-keyed command): decode
		// and validate it here.
		var perr *protocol.Error
		if params, perr = rt.def.Decode(cmd.Params); perr != nil {
			return errorResult(perr, cmd.RequestID), fmt.Errorf("%w: %v", ErrInvalidCommand, perr)
		}
		fp = idempotency.Fingerprint(cmd.Method, protocol.Canonical(params))
	}
	if cmd.CommandID == "" {
		// A message from a gateway that assigned no id: it is recorded, but a
		// redelivery of it is not recognised.
		cmd.CommandID = uuid.NewString()
	}
	c := &call{partner: cmd.Partner, def: rt.def, params: params, now: s.now(), cmd: cmd, fp: fp}
	if rt.run != read {
		return s.runCommand(ctx, rt, c)
	}
	v, err := rt.h(ctx, nil, c)
	var apiErr *protocol.Error
	if errors.As(err, &apiErr) {
		return errorResult(apiErr, cmd.RequestID), nil
	}
	if err != nil {
		return protocol.Result{}, err
	}
	return encodeResult(c, v)
}

// rawBody is a response already encoded.
type rawBody []byte

func encodeResult(c *call, v any) (protocol.Result, error) {
	if b, ok := v.(rawBody); ok {
		return protocol.Result{Status: http.StatusOK, Body: b}, nil
	}
	body, err := json.Marshal(v)
	if err != nil {
		return protocol.Result{}, fmt.Errorf("encode %s result: %w", c.def.Name, err)
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

func notFound(code, field, what, id string) *protocol.Error {
	return protocol.NewError(http.StatusNotFound, code, field,
		fmt.Sprintf("%s %q does not exist", what, id))
}

func conflict(code, field, msg string) *protocol.Error {
	return protocol.NewError(http.StatusConflict, code, field, msg)
}
