package provision

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// TestEveryMethodHasAHandler fails when a method is added to the protocol
// registry without a handler registered for it here.
func TestEveryMethodHasAHandler(t *testing.T) {
	t.Parallel()
	s := New(nil, Config{}, NewMetrics(prometheus.NewRegistry()))
	for _, name := range protocol.Names() {
		if _, ok := s.mux.route(name); !ok {
			t.Errorf("no handler registered for %s", name)
		}
	}
	if len(s.mux.routes) != len(protocol.Names()) {
		t.Errorf("%d handlers for %d methods", len(s.mux.routes), len(protocol.Names()))
	}
}

func TestMuxRefusesDuplicatesAndMisfitRunModes(t *testing.T) {
	t.Parallel()
	getOrder := func(context.Context, pgx.Tx, *call, *protocol.OrderRef) (any, error) { return nil, nil }
	for name, register := range map[string]func(*mux){
		"duplicate": func(m *mux) {
			handle(m, protocol.GetOrderDef, read, getOrder)
			handle(m, protocol.GetOrderDef, read, getOrder)
		},
		"read in a transaction": func(m *mux) { handle(m, protocol.GetOrderDef, inTx, getOrder) },
		"mutation as a read":    func(m *mux) { handle(m, protocol.CancelOrderDef, read, getOrder) },
		"batched read":          func(m *mux) { handle(m, protocol.GetOrderDef, batched, getOrder) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s registration did not panic", name)
				}
			}()
			register(newMux())
		}()
	}
}
