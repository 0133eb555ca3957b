package provision

import (
	"context"
	"fmt"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// handlerFunc runs one decoded and validated command and returns the
// resource to answer with, an API error (*protocol.Error) or a failure.
type handlerFunc func(ctx context.Context, c *call) (any, error)

// mux routes a command to the handler registered for its method, one lookup
// per command, in the manner of asynq's ServeMux. Registering a method the
// protocol registry does not know, or one method twice, is a programming
// error and panics when the service is built; a registered method without a
// handler is caught by TestEveryMethodHasAHandler.
type mux struct {
	handlers map[string]handlerFunc
}

func newMux() *mux { return &mux{handlers: make(map[string]handlerFunc)} }

// handle registers h for method.
func (m *mux) handle(method string, h handlerFunc) {
	if !protocol.Known(method) {
		panic(fmt.Sprintf("provision: handler for %q, which is not a registered method", method))
	}
	if _, dup := m.handlers[method]; dup {
		panic(fmt.Sprintf("provision: two handlers for %q", method))
	}
	m.handlers[method] = h
}

// handler returns the handler of method.
func (m *mux) handler(method string) (handlerFunc, bool) {
	h, ok := m.handlers[method]
	return h, ok
}
