package e2e

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// TestRateLimitSharedByGateways: the limit is per partner and kept in Redis,
// so two gateways on one stack draw on one budget, whichever of the
// partner's keys calls; another partner has its own. At 0.01 calls a second
// the budget is one call, and the next comes back after 100 s: which call is
// refused does not depend on how fast the test runs.
func TestRateLimitSharedByGateways(t *testing.T) {
	t.Parallel()
	s := NewStack(t, "RATE_LIMIT_RPS=0.01")
	gwA := s.StartGateway()
	addrB := testenv.FreeAddr(t)
	gwB := s.StartGateway("HTTP_ADDR=" + addrB)
	s.StartWorker()
	keyA2 := s.NewKey("Partner A")
	keyB := s.NewKey("Partner B")
	get := envelope("getCustomer", m{"id": "ABC"})

	r := s.Do(s.Key, get)
	if r.Status != http.StatusNotFound {
		t.Fatalf("first call, gateway A: %d %s, want 404", r.Status, r.Body)
	}
	wantQuota(t, "first call", r, "1", "0")
	for _, c := range []struct {
		name string
		addr string
		key  string
	}{
		{"same key, gateway B", addrB, s.Key},
		{"the partner's other key, gateway B", addrB, keyA2},
		{"the partner's other key, gateway A", s.HTTPAddr, keyA2},
	} {
		r := callGateway(t, c.addr, c.key, get)
		if r.Status != http.StatusTooManyRequests || r.ErrorCode(t) != "rate_limited" {
			t.Fatalf("%s: %d %s, want 429 rate_limited", c.name, r.Status, r.Body)
		}
		if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 || secs > 100 {
			t.Fatalf("%s: Retry-After %q, want 1 to 100 seconds", c.name, r.Header.Get("Retry-After"))
		}
		wantQuota(t, c.name, r, "1", "0")
	}
	if r := callGateway(t, addrB, keyB, get); r.Status != http.StatusNotFound {
		t.Fatalf("another partner, gateway B: %d %s, want 404", r.Status, r.Body)
	}
	partner := map[string]string{"scope": "partner"}
	if a, b := value(scrape(t, gwA), "oneoffice_rate_limited_total", partner),
		value(scrape(t, gwB), "oneoffice_rate_limited_total", partner); a != 1 || b != 2 {
		t.Fatalf("oneoffice_rate_limited_total{scope=partner}: gateway A %v, B %v; want 1 and 2", a, b)
	}
}

// wantQuota checks the RateLimit headers sent while the limit is on.
func wantQuota(t *testing.T, name string, r Response, limit, remaining string) {
	t.Helper()
	reset, err := strconv.Atoi(r.Header.Get("RateLimit-Reset"))
	if r.Header.Get("RateLimit-Limit") != limit || r.Header.Get("RateLimit-Remaining") != remaining ||
		err != nil || reset < 0 || reset > 100 {
		t.Fatalf("%s: RateLimit-Limit %q, -Remaining %q, -Reset %q; want %s, %s and 0 to 100 seconds", name,
			r.Header.Get("RateLimit-Limit"), r.Header.Get("RateLimit-Remaining"), r.Header.Get("RateLimit-Reset"),
			limit, remaining)
	}
}

// gatewayClient bounds a call to a gateway, which answers within its RPC
// deadline.
var gatewayClient = &http.Client{Timeout: 30 * time.Second}

// callGateway sends body with key to the gateway listening on addr: the
// stack's own helpers call the first gateway only.
func callGateway(t *testing.T, addr, key, body string) Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", key)
	resp, err := gatewayClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	checkAnswer(t, http.MethodPost, body, nil, r)
	return r
}
