package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// deadlineRPC records the deadline of each call and answers it at once.
type deadlineRPC struct{ deadlines chan time.Duration }

var _ RPC = (*deadlineRPC)(nil)

func (r *deadlineRPC) Call(_ context.Context, cmd *protocol.Command, deadline time.Duration) (protocol.Result, error) {
	r.deadlines <- deadline
	return protocol.Result{Status: http.StatusOK, Body: cmd.Params}, nil
}

// clock is a fake time source that only moves when told to.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// SPEC section 5: RPC_TIMEOUT bounds the call as the partner waits for it.
// Time spent before the command is sent (here a key lookup that the
// PostgreSQL behind the auth cache makes slow, on a fake clock) is taken off
// the RPC's deadline, and a call with none left is answered 503 without
// being sent.
func TestRPCTimeoutCountsFromTheCallsArrival(t *testing.T) {
	t.Parallel()
	const timeout = 400 * time.Millisecond
	for _, tt := range []struct {
		name   string
		lookup time.Duration // how long the key lookup takes
		status int
	}{
		{"some time spent", 150 * time.Millisecond, http.StatusOK},
		{"all time spent", timeout, http.StatusServiceUnavailable},
		{"more than all", timeout + 50*time.Millisecond, http.StatusServiceUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := &clock{now: time.Unix(1e9, 0)}
			fake := &deadlineRPC{deadlines: make(chan time.Duration, 1)}
			app := New(Deps{
				Auth: auth.NewCache(func(_ context.Context, h [32]byte) (int64, error) {
					clk.advance(tt.lookup)
					return 1, nil
				}),
				RPC: fake, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Metrics: NewMetrics(prometheus.NewRegistry()), RPCTimeout: timeout, Now: clk.Now,
			})
			a := do(t, app, http.MethodPost, []byte(`{"method":"getOrder","params":{"id":"O1"}}`))
			if a.status != tt.status {
				t.Fatalf("status %d %s, want %d", a.status, a.body, tt.status)
			}
			select {
			case d := <-fake.deadlines:
				if tt.status != http.StatusOK {
					t.Fatalf("the command was sent with deadline %s, want not sent", d)
				}
				if want := timeout - tt.lookup; d != want {
					t.Fatalf("RPC deadline %s after a %s lookup, want %s", d, tt.lookup, want)
				}
			default:
				if tt.status == http.StatusOK {
					t.Fatal("the command was not sent")
				}
				if a.code != protocol.CodeUnavailable {
					t.Fatalf("code %q, want %q", a.code, protocol.CodeUnavailable)
				}
			}
		})
	}
}
