package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/oneoffice/provisioner/gateway/internal/auth"
)

// sandboxApp is the API with a live key, a test key and a read-only test
// key, and a fake RPC that counts the commands sent.
func sandboxApp(t *testing.T) (*fiber.App, *echoRPC) {
	t.Helper()
	keys := map[[32]byte]auth.Key{
		auth.Hash("oo_live"):    {Partner: 1, Live: true},
		auth.Hash("oo_test_t"):  {Partner: 2},
		auth.Hash("oo_test_ro"): {Partner: 2, ReadOnly: true},
	}
	fake := &echoRPC{}
	app := New(Deps{
		Auth:       auth.NewKeyCache(func(_ context.Context, h [32]byte) (auth.Key, error) { return keys[h], nil }, auth.Options{}),
		RPC:        fake,
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:    NewMetrics(prometheus.NewRegistry()),
		RPCTimeout: time.Second,
	})
	return app, fake
}

func keyCall(t *testing.T, app *fiber.App, key, body string) (int, string, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	req.Header.Set("x-api-key", key)
	resp, err := app.Test(req, 5000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("OneOffice-Key"), string(b)
}

// Every answer once the key is known says livemode, success and error
// alike, and names the key's kind in OneOffice-Key; before, neither.
func TestLivemodeOnEveryAnswer(t *testing.T) {
	t.Parallel()
	app, _ := sandboxApp(t)
	create := `{"method":"suspendOrder","params":{"id":"O1"}}`
	for _, c := range []struct {
		key, body, header, suffix string
		status                    int
	}{
		{"oo_live", create, "live", `{"id":"O1","livemode":true}`, 200},
		{"oo_test_t", create, "test", `{"id":"O1","livemode":false}`, 200},
		{"oo_test_t", `{"method":"suspendOrder","params":{}}`, "test", `,"livemode":false}`, 400},
		{"oo_nope", create, "", `"}`, 401},
	} {
		status, header, body := keyCall(t, app, c.key, c.body)
		if status != c.status || header != c.header || !strings.HasSuffix(body, c.suffix) {
			t.Errorf("%s %s: %d, OneOffice-Key %q, %s; want %d, %q, ...%s", c.key, c.body, status, header, body,
				c.status, c.header, c.suffix)
		}
		if c.status == 401 && strings.Contains(body, "livemode") {
			t.Errorf("a 401 tells livemode: %s", body)
		}
	}
}

// A read-only key calling a command is 403 forbidden_for_key, and nothing
// is sent; its bad params do not matter. Its reads go on.
func TestReadOnlyKeyRefusedCommands(t *testing.T) {
	t.Parallel()
	app, fake := sandboxApp(t)
	for _, body := range []string{
		`{"method":"createCustomer","params":{"id":"C1","name":"C","admin":{"email":"a@example.com"}}}`,
		`{"method":"cancelOrder","params":{"id":"O1"}}`,
		`{"method":"deleteUser","params":{}}`,
	} {
		status, header, got := keyCall(t, app, "oo_test_ro", body)
		if status != 403 || header != "test, read-only" || !strings.Contains(got, `"code":"forbidden_for_key"`) ||
			!strings.Contains(got, `"field":"method"`) || !strings.HasSuffix(got, `"livemode":false}`) {
			t.Errorf("%s: %d %q %s", body, status, header, got)
		}
	}
	if n := fake.calls.Load(); n != 0 {
		t.Fatalf("%d commands sent for a read-only key", n)
	}
	// Without a reader, reads go to the RPC as commands do: sent, not refused.
	if status, _, got := keyCall(t, app, "oo_test_ro", `{"method":"getOrder","params":{"id":"O1"}}`); status != 200 {
		t.Fatalf("getOrder with a read-only key: %d %s", status, got)
	}
}

func TestSendBodyAddsLivemode(t *testing.T) {
	t.Parallel()
	app := fiber.New()
	for _, c := range []struct{ in, want string }{
		{`{}`, `{"livemode":false}`},
		{`{ }`, `{ "livemode":false}`},
		{`{"a":1}`, `{"a":1,"livemode":false}`},
		{"{\"a\":{}}\n", "{\"a\":{},\"livemode\":false}\n"},
		{`[1]`, `[1]`},
		{`"x"`, `"x"`},
		{``, ``},
	} {
		ctx := app.AcquireCtx(new(fasthttp.RequestCtx))
		ctx.Locals(liveKey{}, false)
		if err := sendBody(ctx, []byte(c.in)); err != nil {
			t.Fatal(err)
		}
		if got := string(ctx.Response().Body()); got != c.want {
			t.Errorf("sendBody(%q) wrote %q, want %q", c.in, got, c.want)
		}
		app.ReleaseCtx(ctx)
	}
}
