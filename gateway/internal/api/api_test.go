package api

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/gateway/internal/rpc"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// echoRPC answers every command with its canonical params, and panics on the
// command whose params are {"id":"PANIC"}: the fault a handler must survive.
type echoRPC struct{ calls atomic.Int32 }

var _ RPC = (*echoRPC)(nil)

func (r *echoRPC) Call(_ context.Context, cmd *protocol.Command, _ time.Duration) (protocol.Result, error) {
	r.calls.Add(1)
	if string(cmd.Params) == `{"id":"SLOW"}` {
		return protocol.Result{}, rpc.ErrTimeout
	}
	if string(cmd.Params) == `{"id":"PANIC"}` {
		panic("injected fault")
	}
	return protocol.Result{Status: http.StatusOK, Body: cmd.Params}, nil
}

const testKey = "oo_test_key"

// newTestApp is the API with one valid key and a fake RPC; reads only, so
// no idempotency store is needed.
func newTestApp(t *testing.T) (*fiber.App, *echoRPC) {
	t.Helper()
	return newTestAppWith(t, nil)
}

func newTestAppWith(t *testing.T, idem *idempotency.Store) (*fiber.App, *echoRPC) {
	t.Helper()
	fake := &echoRPC{}
	app := New(Deps{
		Idem: idem,
		Auth: auth.NewCache(func(_ context.Context, h [32]byte) (int64, error) {
			if h == auth.Hash(testKey) {
				return 1, nil
			}
			return 0, nil
		}),
		RPC:        fake,
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:    NewMetrics(prometheus.NewRegistry()),
		RPCTimeout: time.Second,
	})
	return app, fake
}

type answer struct {
	status int
	header http.Header
	code   string
	field  string
	msg    string
	body   string
}

func do(t *testing.T, app *fiber.App, verb string, body []byte, headers ...string) answer {
	t.Helper()
	req := httptest.NewRequest(verb, "/", bytes.NewReader(body))
	req.Header.Set("x-api-key", testKey)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := app.Test(req, 5000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	var e struct {
		Error struct{ Code, Field, Message string }
	}
	if json.Unmarshal(b, &e) == nil {
		a.code, a.field, a.msg = e.Error.Code, e.Error.Field, e.Error.Message
	}
	return a
}

func compress(t *testing.T, coding string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "raw-deflate":
		w, _ = flate.NewWriter(&buf, flate.BestCompression)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.Bytes()
}

const getOrder = `{"method":"getOrder","params":{"id":"O1"}}`

func TestBodiesAreInflatedWithinTheLimit(t *testing.T) {
	t.Parallel()
	app, rpc := newTestApp(t)
	bomb := compress(t, "gzip", bytes.Repeat([]byte(" "), 64<<20)) // 64 MiB of spaces, ~64 KiB sent
	padded := []byte(getOrder[:len(getOrder)-1] + `,"pad":"` + strings.Repeat("x", 60<<10) + `"}`)
	cases := []struct {
		name     string
		body     []byte
		encoding string
		status   int
		code     string
	}{
		{"identity", []byte(getOrder), "", 200, ""},
		{"identity named", []byte(getOrder), "identity", 200, ""},
		{"gzip", compress(t, "gzip", []byte(getOrder)), "gzip", 200, ""},
		{"gzip upper case", compress(t, "gzip", []byte(getOrder)), "GZIP", 200, ""},
		{"deflate (zlib)", compress(t, "deflate", []byte(getOrder)), "deflate", 200, ""},
		{"deflate (raw)", compress(t, "raw-deflate", []byte(getOrder)), "deflate", 200, ""},
		{"gzip under the limit", compress(t, "gzip", padded), "gzip", 200, ""},
		{"chained", compress(t, "gzip", compress(t, "deflate", []byte(getOrder))), "deflate, gzip", 200, ""},
		{"bomb", bomb, "gzip", 413, protocol.CodeBodyTooLarge},
		{"chained bomb", compress(t, "gzip", bomb), "gzip, gzip", 413, protocol.CodeBodyTooLarge},
		{"three layers", []byte(getOrder), "identity, gzip, gzip", 415, protocol.CodeUnsupportedEncoding},
		{"br", []byte(getOrder), "br", 415, protocol.CodeUnsupportedEncoding},
		{"zstd", []byte(getOrder), "zstd", 415, protocol.CodeUnsupportedEncoding},
		{"not gzip", []byte(getOrder), "gzip", 400, protocol.CodeInvalidRequest},
		{"truncated gzip", compress(t, "gzip", []byte(getOrder))[:20], "gzip", 400, protocol.CodeInvalidRequest},
	}
	for _, c := range cases {
		before := rpc.calls.Load()
		a := do(t, app, http.MethodPost, c.body, "Content-Encoding", c.encoding)
		if a.status != c.status || a.code != c.code {
			t.Errorf("%s: %d %s %q, want %d %s", c.name, a.status, a.code, a.msg, c.status, c.code)
		}
		if sent := rpc.calls.Load() - before; (c.status == 200) != (sent == 1) {
			t.Errorf("%s: %d commands sent", c.name, sent)
		}
		if c.code != "" && c.code != protocol.CodeBodyTooLarge && a.field != "Content-Encoding" {
			t.Errorf("%s: field %q, want Content-Encoding", c.name, a.field)
		}
	}
}

func TestEnvelopeIsDecodedStrictly(t *testing.T) {
	t.Parallel()
	app, rpc := newTestApp(t)
	cases := []struct {
		name, body         string
		status             int
		code, field, inMsg string
	}{
		{"other names are ignored, exact case", `{"method":"getOrder","params":{"id":"O1"},"METHOD":"cancelOrder","Params":{"id":"X"}}`, 200, "", "", ""},
		{"duplicate method", `{"method":"getOrder","method":"cancelOrder","params":{"id":"O1"}}`, 400, "invalid_json", "method", "method appears twice"},
		{"duplicate param", `{"method":"getOrder","params":{"id":"O1","id":"O2"}}`, 400, "invalid_json", "params.id", "appears twice"},
		{"duplicate in an ignored field", `{"method":"getOrder","params":{"id":"O1"},"x":{"a":1,"a":2}}`, 400, "invalid_json", "x.a", ""},
		{"params name case", `{"method":"getOrder","params":{"ID":"O1"}}`, 400, "invalid_params", "params.ID", "case-sensitive"},
		{"too deep", `{"method":"getOrder","params":{"id":"O1"},"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, 400, "invalid_json", "", "deeper than 16"},
		{"truncated", `{"method":"getOrder","params":{"id":"O1"}`, 400, "invalid_json", "", "at byte"},
		{"trailing garbage", getOrder + `x`, 400, "invalid_json", "", "at byte"},
		{"not an object", `[1,2]`, 400, "invalid_request", "", ""},
		{"params null", `{"method":"getOrder","params":null}`, 400, "invalid_request", "params", "JSON object"},
		{"method not a string", `{"method":7,"params":{}}`, 400, "invalid_request", "method", ""},
		{"unknown method", `{"method":"dropTables","params":{}}`, 400, "unknown_method", "method", ""},
		{"NUL in a name", `{"method":"createCustomer","params":{"id":"A","name":"A\u0000B","admin":{"email":"a@example.com"}}}`, 400, "invalid_params", "params.name", "U+0000"},
	}
	for _, c := range cases {
		before := rpc.calls.Load()
		a := do(t, app, http.MethodGet, []byte(c.body))
		if a.status != c.status || a.code != c.code || a.field != c.field || !strings.Contains(a.msg, c.inMsg) {
			t.Errorf("%s: %d %s %s %q, want %d %s %s %q", c.name, a.status, a.code, a.field, a.msg, c.status, c.code, c.field, c.inMsg)
		}
		if sent := rpc.calls.Load() - before; (c.status == 200) != (sent == 1) {
			t.Errorf("%s: %d commands sent", c.name, sent)
		}
	}
}

func TestHTTPSurface(t *testing.T) {
	t.Parallel()
	app, _ := newTestApp(t)
	for _, verb := range []string{http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		a := do(t, app, verb, []byte(getOrder))
		if a.status != http.StatusMethodNotAllowed || a.header.Get("Allow") != "GET, POST" {
			t.Errorf("%s: %d Allow %q, want 405 GET, POST", verb, a.status, a.header.Get("Allow"))
		}
		if a.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", verb, a.header.Get("Cache-Control"))
		}
	}
	var many []string
	for i := range MaxHeaders + 1 {
		many = append(many, "X-Extra-"+strings.Repeat("a", i+1), "1")
	}
	if a := do(t, app, http.MethodGet, []byte(getOrder), many...); a.status != 431 || a.code != protocol.CodeHeadersTooLarge {
		t.Errorf("%d headers: %d %s", MaxHeaders+1, a.status, a.code)
	}
	for _, a := range []answer{
		do(t, app, http.MethodGet, []byte(getOrder)),
		do(t, app, http.MethodPost, []byte(`{`)),
		do(t, app, http.MethodPost, []byte(getOrder), "x-api-key", "wrong"),
	} {
		if a.header.Get("Cache-Control") != "no-store" || a.header.Get("X-Request-Id") == "" {
			t.Errorf("%d: Cache-Control %q X-Request-Id %q", a.status, a.header.Get("Cache-Control"), a.header.Get("X-Request-Id"))
		}
	}
}

func TestAPanicIsThatCallsInternalError(t *testing.T) {
	t.Parallel()
	app, _ := newTestApp(t)
	a := do(t, app, http.MethodPost, []byte(`{"method":"getOrder","params":{"id":"PANIC"}}`), "X-Request-Id", "rid-panic")
	var body struct{ RequestID string }
	json.Unmarshal([]byte(a.body), &body)
	if a.status != 500 || a.code != protocol.CodeInternal || body.RequestID != "rid-panic" || a.header.Get("X-Request-Id") != "rid-panic" {
		t.Fatalf("panic: %d %s, requestId %q, header %q", a.status, a.body, body.RequestID, a.header.Get("X-Request-Id"))
	}
	if a := do(t, app, http.MethodPost, []byte(getOrder)); a.status != 200 {
		t.Fatalf("the call after a panic: %d %s", a.status, a.body)
	}
}

// TestA202IsMarkedPending: a call answered 202 leaves the marker getRequest
// reads, in the real Redis, under the caller's partner and request id.
func TestA202IsMarkedPending(t *testing.T) {
	t.Parallel()
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	idem := idempotency.NewStore(rdb, time.Hour)
	app, _ := newTestAppWith(t, idem)
	a := do(t, app, http.MethodPost, []byte(`{"method":"getOrder","params":{"id":"SLOW"}}`), "X-Request-Id", "rid-slow")
	if a.status != http.StatusAccepted {
		t.Fatalf("slow call: %d %s", a.status, a.body)
	}
	p, ok, err := idem.Pending(context.Background(), 1, "rid-slow")
	if err != nil || !ok || p.Method != protocol.GetOrder {
		t.Fatalf("pending marker: %+v %v %v", p, ok, err)
	}
	if _, ok, _ := idem.Pending(context.Background(), 2, "rid-slow"); ok {
		t.Fatal("another partner sees the marker")
	}
}
