package provision

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// runMode is how a method's handler runs.
type runMode int

const (
	// read: on the pool, in no transaction, and nothing is recorded; the
	// handler gets a nil tx. Every method that does not mutate.
	read runMode = iota
	// inTx: in the command's transaction, which the ledger opens and in
	// which it records the command after the handler's effect (runCommand).
	inTx
	// batched: first with no transaction (tx nil), in a statement shared
	// with concurrent commands of the method, which writes their ledger rows
	// itself; the handler answers a command that statement recorded, or
	// returns errInTx to be run again as inTx.
	batched
)

// handler runs one command of a method with params P, decoded and validated,
// and returns the resource to answer with, an API error (*protocol.Error) or
// a failure. tx is the command's transaction (nil for a read).
type handler[P any] func(ctx context.Context, tx pgx.Tx, c *call, p *P) (any, error)

// route is a method's handler, untyped.
type route struct {
	def *protocol.Method
	run runMode
	h   func(ctx context.Context, tx pgx.Tx, c *call) (any, error)
}

// mux routes a command to the handler registered for its method, one lookup
// per command, in the manner of asynq's ServeMux. A handler is registered
// against the method's definition, whose params type it takes; registering
// one method twice, or a run mode that does not fit the method (a read in a
// transaction, a mutation out of one) is a programming error and panics when
// the service is built. A method without a handler is caught by
// TestEveryMethodHasAHandler.
type mux struct {
	routes map[string]*route
}

func newMux() *mux { return &mux{routes: make(map[string]*route)} }

// handle registers h, run as run, for the method d.
func handle[P any](m *mux, d *protocol.Definition[P], run runMode, h handler[P]) {
	if _, dup := m.routes[d.Name]; dup {
		panic(fmt.Sprintf("provision: two handlers for %q", d.Name))
	}
	if d.Mutates == (run == read) {
		panic(fmt.Sprintf("provision: %q is run as it cannot be: a method runs as a read if and only if it does not mutate", d.Name))
	}
	m.routes[d.Name] = &route{def: d.Method, run: run, h: func(ctx context.Context, tx pgx.Tx, c *call) (any, error) {
		// The params were decoded by d: they are a *P.
		return h(ctx, tx, c, c.params.(*P))
	}}
}

// handleRead registers h for the read d (shared/reads answers every read).
func handleRead(m *mux, d *protocol.Method, h func(ctx context.Context, c *call) (any, error)) {
	if _, dup := m.routes[d.Name]; dup || d.Mutates {
		panic(fmt.Sprintf("provision: %q is bound twice, or is not a read", d.Name))
	}
	m.routes[d.Name] = &route{def: d, run: read, h: func(ctx context.Context, _ pgx.Tx, c *call) (any, error) { return h(ctx, c) }}
}

// route returns the route of method.
func (m *mux) route(method string) (*route, bool) {
	r, ok := m.routes[method]
	return r, ok
}
