package preauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/oneoffice/provisioner/scripts/lab/load"
)

// callTimeout bounds one call: the gateway answers a refused key at once and
// a getCustomer within its RPC deadline (4 s).
const callTimeout = 10 * time.Second

// caller sends getCustomer calls to the gateway over up to conns connections.
type caller struct {
	client *fasthttp.HostClient
	body   []byte
}

func newCaller(addr string, conns int, body []byte) *caller {
	return &caller{body: body, client: &fasthttp.HostClient{
		Addr: addr, MaxConns: conns,
		// Calls past the connections wait for one rather than fail: the
		// open loop's in-flight bound is what sheds load.
		MaxConnWaitTimeout: callTimeout,
		ReadTimeout:        callTimeout, WriteTimeout: callTimeout,
	}}
}

// call sends one call with key and returns its status as a label
// ("no answer": a timeout, a connection error).
func (c *caller) call(key string) string {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + c.client.Addr + "/")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set("x-api-key", key)
	req.SetBody(c.body)
	if err := c.client.DoTimeout(req, resp, callTimeout); err != nil {
		return "no answer"
	}
	return strconv.Itoa(resp.StatusCode())
}

// randomKey is a well-formed key that no partner has: each one costs the
// gateway a lookup unless something stops it first.
func randomKey() string {
	var b [32]byte
	rand.Read(b[:])
	return "oo_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// phase runs the valid partner's probe, and the flood of random keys when
// floodRate > 0, for d (open loops), and returns what each got: every call
// is recorded under its status.
func phase(ctx context.Context, cfg config, probe, flood *caller, key string, d time.Duration, floodRate float64) (good, bad *load.Recorder, err error) {
	bad = load.NewRecorder()
	var wg sync.WaitGroup
	if floodRate > 0 {
		wg.Go(func() {
			bad = load.Open(ctx, func(context.Context) string { return flood.call(randomKey()) }, floodRate, d, cfg.maxInFlight)
		})
	}
	good = load.Open(ctx, func(context.Context) string { return probe.call(key) }, cfg.probeRate, d, cfg.maxInFlight)
	wg.Wait()
	return good, bad, ctx.Err()
}
