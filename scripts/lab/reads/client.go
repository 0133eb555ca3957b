package reads

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// callTimeout bounds one call: above any RPC_TIMEOUT the lab sets.
const callTimeout = 10 * time.Second

// client sends calls of one partner to the gateway.
type client struct {
	http *fasthttp.HostClient
	key  string
}

func newClient(addr, key string, conns int) *client {
	return &client{key: key, http: &fasthttp.HostClient{Addr: addr, MaxConns: conns,
		MaxConnWaitTimeout: callTimeout, ReadTimeout: callTimeout, WriteTimeout: callTimeout}}
}

// call sends body with X-Request-Id rid (none when empty) and returns ""
// for a 200, else the status (or "no answer") as the outcome's label.
func (c *client) call(body, rid string) string { return c.callWant(body, rid, 200) }

// callWant is call with the status that is a success.
func (c *client) callWant(body, rid string, want int) string {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + c.http.Addr + "/")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set("x-api-key", c.key)
	if rid != "" {
		req.Header.Set("X-Request-Id", rid)
	}
	req.SetBodyString(body)
	if err := c.http.DoTimeout(req, resp, callTimeout); err != nil {
		return "no answer"
	}
	if resp.StatusCode() == want {
		return ""
	}
	return strconv.Itoa(resp.StatusCode())
}

func atomicAdd(n *int64) int64 { return atomic.AddInt64(n, 1) }

// fetch sends body and returns the status and the answer's body.
func (c *client) fetch(body string) (int, []byte) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + c.http.Addr + "/")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set("x-api-key", c.key)
	req.SetBodyString(body)
	if err := c.http.DoTimeout(req, resp, callTimeout); err != nil {
		return 0, nil
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...)
}
