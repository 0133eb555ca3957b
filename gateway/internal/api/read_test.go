package api

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// silentReader is a database whose link is cut: it answers nothing until the
// read's context ends, and tells how long the read was given.
type silentReader struct{ given chan time.Duration }

func (r silentReader) Answer(ctx context.Context, _ int64, _ *protocol.Method, _ protocol.Params) (any, error) {
	d, _ := ctx.Deadline()
	r.given <- time.Until(d)
	<-ctx.Done()
	return nil, ctx.Err()
}

// A read the database does not answer is 503 unavailable once ReadTimeout
// has passed, not at the end of the call's whole RPCTimeout.
func TestAReadTheDatabaseDoesNotAnswerIs503AfterReadTimeout(t *testing.T) {
	t.Parallel()
	reader := silentReader{given: make(chan time.Duration, 1)}
	const readTimeout = 20 * time.Millisecond
	app := New(Deps{
		Auth: auth.NewKeyCache(func(_ context.Context, h [32]byte) (auth.Key, error) {
			return auth.Key{Partner: 1, Live: true}, nil
		}, auth.Options{}),
		Reads:       reader,
		RPC:         &echoRPC{},
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:     NewMetrics(prometheus.NewRegistry()),
		RPCTimeout:  time.Hour, // a call's whole time: the read must not wait for it
		ReadTimeout: readTimeout,
	})
	a := do(t, app, "POST", []byte(`{"method":"getOrder","params":{"id":"O1"}}`))
	if a.status != 503 || a.code != protocol.CodeUnavailable {
		t.Fatalf("a read the database does not answer: %d %s, want 503 unavailable", a.status, a.body)
	}
	if given := <-reader.given; given > readTimeout {
		t.Errorf("the read was given %v, want at most READ_TIMEOUT %v", given, readTimeout)
	}
}
