package provision

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// TestEveryMethodHasAHandler fails when a method is added to the protocol
// registry without a handler registered for it here.
func TestEveryMethodHasAHandler(t *testing.T) {
	t.Parallel()
	s := New(nil, Config{}, NewMetrics(prometheus.NewRegistry()))
	for _, name := range protocol.Names() {
		if _, ok := s.mux.handler(name); !ok {
			t.Errorf("no handler registered for %s", name)
		}
	}
	if len(s.mux.handlers) != len(protocol.Names()) {
		t.Errorf("%d handlers for %d methods", len(s.mux.handlers), len(protocol.Names()))
	}
}

func TestMuxRefusesUnknownAndDuplicateMethods(t *testing.T) {
	t.Parallel()
	for name, register := range map[string]func(*mux){
		"unknown":   func(m *mux) { m.handle("dropTables", nil) },
		"duplicate": func(m *mux) { m.handle(protocol.GetOrder, nil); m.handle(protocol.GetOrder, nil) },
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
