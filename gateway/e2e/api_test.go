package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

var primer = m{"id": "ABC", "name": "ABC Company", "admin": m{"email": "test3@example.com", "phone": "111111111", "displayName": "Isa Aswath"}}

func TestEveryMethodOverHTTP(t *testing.T) {
	t.Parallel()
	// A window of 400 days lets a yearly order created now renew once.
	s := NewStack(t, "RENEWAL_WINDOW_DAYS=400")
	s.StartGateway()
	s.StartWorker()
	s.StartWorker()

	r := s.Call("createCustomer", primer, "X-Request-Id", "req-1")
	if r.Status != 200 || r.Header.Get("X-Request-Id") != "req-1" {
		t.Fatalf("createCustomer: %d %v %s", r.Status, r.Header, r.Body)
	}
	c := r.JSON(t)
	for k, want := range (m{"remoteId": "ABC", "name": "ABC Company", "isActive": true}) {
		if c[k] != want {
			t.Errorf("customer %s = %v, want %v", k, c[k], want)
		}
	}
	if c["admin"].(m)["email"] != "test3@example.com" || c["id"].(float64) < 1 || c["createdAt"].(float64) < 1.7e9 {
		t.Errorf("customer body %s", r.Body)
	}
	if n := s.Count(`SELECT count(*) FROM tenants WHERE remote_id = 'ABC' AND name = 'ABC Company' AND admin_phone = '111111111'`); n != 1 {
		t.Fatalf("tenant rows %d", n)
	}

	o := s.Want(200, "createFirstOrder", m{"customer": "ABC", "id": "O1", "product": "oo-lite", "licenses": 20, "duration": "yearly"})
	if o["id"] != "O1" || o["customer"] != "ABC" || o["status"] != "active" || o["licenses"] != float64(20) ||
		time.Unix(int64(o["termEnd"].(float64)), 0).Sub(time.Unix(int64(o["termStart"].(float64)), 0)) < 365*24*time.Hour {
		t.Fatalf("order %v", o)
	}
	rn := s.Want(200, "createRenewalOrder", m{"parent": "O1", "id": "R1"})
	if len(rn["renewals"].([]any)) != 1 || rn["termEnd"].(float64) <= o["termEnd"].(float64) {
		t.Fatalf("renewal %v", rn)
	}
	if r := s.Call("createRenewalOrder", m{"parent": "O1", "id": "R2"}); r.Status != 422 || r.ErrorCode(t) != "renewal_too_early" {
		t.Fatalf("second renewal: %d %s", r.Status, r.Body)
	}
	if n := s.Count(`SELECT count(*) FROM renewals`); n != 1 {
		t.Fatalf("renewal rows %d", n)
	}
	for _, step := range []struct{ method, status string }{
		{"suspendOrder", "suspended"}, {"resumeOrder", "active"}, {"cancelOrder", "cancelled"},
	} {
		if got := s.Want(200, step.method, m{"id": "O1"}); got["status"] != step.status {
			t.Fatalf("%s: status %v", step.method, got["status"])
		}
	}
	var status string
	s.DB().QueryRow(t.Context(), `SELECT status FROM orders WHERE remote_id = 'O1'`).Scan(&status)
	if status != "cancelled" {
		t.Fatalf("order row status %q", status)
	}
	s.Want(200, "createFirstOrder", m{"customer": "ABC", "id": "O2", "product": "erp-std", "licenses": 3, "duration": "monthly"})
	if u := s.Want(200, "updateOrder", m{"id": "O2", "licenses": 9}); u["licenses"] != float64(9) {
		t.Fatalf("update %v", u)
	}
	if g := s.Want(200, "getOrder", m{"id": "R1"}); g["id"] != "O1" || g["status"] != "cancelled" {
		t.Fatalf("getOrder by renewal id %v", g)
	}
	if g := s.Want(200, "getCustomer", m{"id": "ABC"}); g["id"] != c["id"] {
		t.Fatalf("getCustomer %v", g)
	}
	if g := s.Want(200, "getRequest", m{"id": "req-1"}); g["method"] != "createCustomer" || g["status"] != "succeeded" {
		t.Fatalf("getRequest %v", g)
	}
	if u := s.Want(200, "createUser", m{"email": "Ann@Example.com", "displayName": "Ann"}); u["email"] != "ann@example.com" || u["isActive"] != true {
		t.Fatalf("createUser %v", u)
	}
	if rs := s.Want(200, "resetUser", m{"email": "ann@example.com"}); len(rs["resetToken"].(string)) < 32 {
		t.Fatalf("resetUser %v", rs)
	}
	if d := s.Want(200, "deleteUser", m{"email": "ann@example.com"}); d["deleted"] != true {
		t.Fatalf("deleteUser %v", d)
	}
	if n := s.Count(`SELECT count(*) FROM users`); n != 0 {
		t.Fatalf("user rows after delete %d", n)
	}
	// The reads of reconciliation: lists by page, and a batch of orders.
	if l := s.Want(200, "listCustomers", m{"limit": 1}); len(l["data"].([]any)) != 1 || l["data"].([]any)[0].(m)["remoteId"] != "ABC" || l["nextCursor"] != nil {
		t.Fatalf("listCustomers %v", l)
	}
	if l := s.Want(200, "listOrders", m{"customer": "ABC", "limit": 1}); l["data"].([]any)[0].(m)["id"] != "O1" || l["nextCursor"] == nil {
		t.Fatalf("listOrders %v", l)
	} else if l2 := s.Want(200, "listOrders", m{"customer": "ABC", "limit": 1, "cursor": l["nextCursor"]}); l2["data"].([]any)[0].(m)["id"] != "O2" || l2["nextCursor"] != nil {
		t.Fatalf("listOrders, page 2 %v", l2)
	}
	if l := s.Want(200, "listUsers", m{}); len(l["data"].([]any)) != 0 {
		t.Fatalf("listUsers after the delete %v", l)
	}
	if l := s.Want(200, "listRequests", m{"method": "createCustomer"}); len(l["data"].([]any)) != 1 || l["data"].([]any)[0].(m)["requestId"] != "req-1" {
		t.Fatalf("listRequests %v", l)
	}
	if g := s.Want(200, "getOrders", m{"ids": []string{"O2", "R1", "NOPE"}}); len(g["data"].([]any)) != 2 || g["missing"].([]any)[0] != "NOPE" {
		t.Fatalf("getOrders %v", g)
	}
	if p := s.Want(200, "getPartner", m{}); p["name"] != "Partner A" || p["id"] != c["partner"] {
		t.Fatalf("getPartner %v, want Partner A, id %v", p, c["partner"])
	}
	// This stack has no webhook endpoint: no event to list or replay.
	if l := s.Want(200, "listEvents", m{"type": "command.succeeded"}); len(l["data"].([]any)) != 0 || l["nextCursor"] != nil {
		t.Fatalf("listEvents %v", l)
	}
	if r := s.Call("replayEvent", m{"id": "msg_0b6f3c1e-8f4a-4f0e-9a51-2c4b8e1d7f30"}); r.Status != 404 || r.ErrorCode(t) != "event_not_found" {
		t.Fatalf("replayEvent of no event: %d %s", r.Status, r.Body)
	}
	// POST works the same as GET.
	if r := s.do(s.client, http.MethodPost, s.Key, envelope("getCustomer", m{"id": "ABC"})); r.Status != 200 {
		t.Fatalf("POST: %d %s", r.Status, r.Body)
	}
}

func TestPartnerIsolation(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	keyB := s.NewKey("Partner B")
	a := s.Want(200, "createCustomer", primer)
	s.Want(200, "createFirstOrder", m{"customer": "ABC", "id": "O1", "product": "oo-ent", "licenses": 1, "duration": "monthly"})
	s.Want(200, "createUser", m{"email": "ann@example.com"})

	asB := func(method string, params any) Response { return s.Do(keyB, envelope(method, params)) }
	for _, c := range []struct {
		method string
		params any
		code   string
	}{
		{"getCustomer", m{"id": "ABC"}, "customer_not_found"},
		{"getOrder", m{"id": "O1"}, "order_not_found"},
		{"cancelOrder", m{"id": "O1"}, "order_not_found"},
		{"createFirstOrder", m{"customer": "ABC", "id": "O9", "product": "oo-ent", "licenses": 1, "duration": "monthly"}, "customer_not_found"},
		{"resetUser", m{"email": "ann@example.com"}, "user_not_found"},
	} {
		if r := asB(c.method, c.params); r.Status != 404 || r.ErrorCode(t) != c.code {
			t.Errorf("partner B %s: %d %s, want 404 %s", c.method, r.Status, r.Body, c.code)
		}
	}
	// The same remote id can exist under both partners.
	r := asB("createCustomer", primer)
	// Each partner numbers its own customers: both are customer 1 of their partner.
	if r.Status != 200 || r.JSON(t)["id"] != a["id"] || r.JSON(t)["partner"] == a["partner"] {
		t.Fatalf("partner B createCustomer ABC: %d %s (A: %v)", r.Status, r.Body, a)
	}
	if g := s.Want(200, "getOrder", m{"id": "O1"}); g["status"] != "active" {
		t.Fatalf("partner A's order changed: %v", g)
	}
	if n := s.Count(`SELECT count(*) FROM tenants WHERE remote_id = 'ABC'`); n != 2 {
		t.Fatalf("tenants ABC %d, want 2", n)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	body := envelope("getCustomer", m{"id": "ABC"})
	for name, key := range map[string]string{"no key": "", "unknown key": "oo_not-a-key"} {
		r := s.Do(key, body)
		if r.Status != 401 || r.ErrorCode(t) != "unauthorized" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	// 401 comes before anything else is looked at, even a malformed body.
	if r := s.Do("", "{"); r.Status != 401 {
		t.Errorf("no key, bad body: %d", r.Status)
	}
	if r := s.Do("", body, "Authorization", "Bearer "+s.Key); r.Status != 404 {
		t.Errorf("bearer: %d %s", r.Status, r.Body)
	}
	key := s.NewKey("Partner A")
	if r := s.Do(key, body); r.Status != 404 {
		t.Fatalf("new key: %d %s", r.Status, r.Body)
	}
	s.admin("keys", "revoke", key)
	// SPEC section 6: a revoked key stops working (within 5 s: the auth
	// cache's TTL, checked on a fake clock in its own tests). Params the
	// gateway refuses itself (400 once the key passed) keep the worker out.
	probe := envelope("getCustomer", m{})
	for deadline := time.Now().Add(settleWithin); ; time.Sleep(100 * time.Millisecond) {
		r := s.DoOnce(key, probe)
		if r.Status == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked key still works %v after the revocation: %d %s", settleWithin, r.Status, r.Body)
		}
	}
	if r := s.Do(s.Key, body); r.Status != 404 {
		t.Fatalf("the other key of the partner stopped working: %d", r.Status)
	}
}

func TestMalformedInput(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	cases := []struct {
		name, body  string
		status      int
		code, field string
		msgFragment string
	}{
		{"truncated JSON", `{"method":"getCustomer","params":{"id":"A"}`, 400, "invalid_json", "", "at byte"},
		{"not JSON", `method=getCustomer`, 400, "invalid_json", "", "at byte 0"},
		{"empty body", ``, 400, "invalid_json", "", "empty"},
		{"array body", `[1,2]`, 400, "invalid_request", "", "JSON object"},
		{"params string", `{"method":"getCustomer","params":"ABC"}`, 400, "invalid_request", "params", "params must be a JSON object"},
		{"params number", `{"method":"getCustomer","params":7}`, 400, "invalid_request", "params", ""},
		{"params array", `{"method":"getCustomer","params":["ABC"]}`, 400, "invalid_request", "params", ""},
		{"params null", `{"method":"getCustomer","params":null}`, 400, "invalid_request", "params", ""},
		{"no method", `{"params":{}}`, 400, "invalid_request", "method", ""},
		{"unknown method", `{"method":"dropAll","params":{}}`, 400, "unknown_method", "method", "dropAll"},
		{"bad param", `{"method":"createFirstOrder","params":{"customer":"C","id":"O","product":"oo-lite","licenses":0,"duration":"monthly"}}`,
			400, "invalid_params", "params.licenses", "params.licenses must be an integer from 1 to 100000"},
		{"primer empty email", `{"method":"createUser", "params":{"email":""}}`, 400, "invalid_params", "params.email", "params.email"},
		{"oversized", `{"method":"getCustomer","params":{"id":"A","pad":"` + strings.Repeat("x", 70<<10) + `"}}`, 413, "body_too_large", "", "64 KiB"},
	}
	for _, c := range cases {
		r := s.Do(s.Key, c.body)
		body := r.JSON(t)
		e, _ := body["error"].(m)
		field, _ := e["field"].(string)
		msg, _ := e["message"].(string)
		if r.Status != c.status || e["code"] != c.code || field != c.field || !strings.Contains(msg, c.msgFragment) {
			t.Errorf("%s: %d %s, want %d %s field %q message with %q", c.name, r.Status, r.Body, c.status, c.code, c.field, c.msgFragment)
		}
		if rid := r.Header.Get("X-Request-Id"); rid == "" || body["requestId"] != rid {
			t.Errorf("%s: requestId %v, header %q", c.name, body["requestId"], rid)
		}
	}
	// 401 comes first even for a body over the limit.
	if r := s.Do("", `{"pad":"`+strings.Repeat("x", 70<<10)+`"}`); r.Status != 401 {
		t.Errorf("oversized without key: %d", r.Status)
	}
	if r := s.do(s.client, http.MethodPut, s.Key, `{}`); r.Status != 405 || r.ErrorCode(t) != "method_not_allowed" {
		t.Errorf("PUT: %d %s", r.Status, r.Body)
	}
	if n := s.Count(`SELECT count(*) FROM tenants`); n != 0 {
		t.Errorf("bad input provisioned %d tenants", n)
	}
}

func TestParallelIdenticalCreatesProvisionOnce(t *testing.T) {
	t.Parallel()
	parallelCreates(t, 40, false)
}

// parallelCreates sends the same createCustomer calls at once (each on its own
// connection when separate is set) to a gateway and two workers, and checks
// that exactly one customer exists and every answer is the same 200 or 409
// request_in_progress. A call answered 202 pending is repeated until its
// result, as SPEC section 5 tells partners: a loaded machine may take longer
// than the RPC deadline.
func parallelCreates(t *testing.T, calls int, separate bool) {
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	s.StartWorker()
	results := make([]Response, calls)
	errs := make([]error, calls)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range calls {
		wg.Go(func() {
			client := s.client
			if separate {
				client = &http.Client{Timeout: clientTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
			}
			<-start
			results[i], errs[i] = s.settle(client, http.MethodGet, s.Key, envelope("createCustomer", primer))
		})
	}
	close(start)
	wg.Wait()
	mix := map[int]int{}
	var body string
	pending := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Errorf("call %d: %v", i, errs[i])
			continue
		}
		mix[r.Status]++
		pending += min(r.Pending, 1)
		switch {
		case r.Status == 200 && body == "":
			body = string(r.Body)
		case r.Status == 200 && string(r.Body) != body:
			t.Errorf("200 bodies differ:\n%s\n%s", body, r.Body)
		case r.Status == 409 && r.ErrorCode(t) != "request_in_progress", r.Status != 200 && r.Status != 409:
			t.Errorf("unexpected %d %s", r.Status, r.Body)
		}
	}
	rows := s.Count(`SELECT count(*) FROM tenants WHERE remote_id = 'ABC'`)
	t.Logf("%d parallel calls: status mix %v (%d answered 202 pending first), customer rows %d", calls, mix, pending, rows)
	if rows != 1 || mix[200] == 0 {
		t.Fatalf("rows %d, mix %v", rows, mix)
	}
}

func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	gw := s.StartGateway()
	w1, w2 := s.StartWorker(), s.StartWorker()
	c := s.Want(200, "createCustomer", primer)
	s.Want(200, "createFirstOrder", m{"customer": "ABC", "id": "O1", "product": "oo-lite", "licenses": 2, "duration": "monthly"})
	gw.Stop()
	w1.Stop()
	w2.Stop()
	s.StartGateway()
	s.StartWorker()
	s.StartWorker()
	if g := s.Want(200, "getCustomer", m{"id": "ABC"}); g["id"] != c["id"] {
		t.Fatalf("after restart: %v, before %v", g, c)
	}
	if g := s.Want(200, "getOrder", m{"id": "O1"}); g["licenses"] != float64(2) {
		t.Fatalf("order after restart: %v", g)
	}
	s.Want(200, "createCustomer", primer) // replayed
	s.Want(200, "createFirstOrder", m{"customer": "ABC", "id": "O2", "product": "oo-lite", "licenses": 2, "duration": "monthly"})
	if n := s.Count(`SELECT count(*) FROM orders`); n != 2 {
		t.Fatalf("orders %d", n)
	}
}

func TestRateLimitPerKey(t *testing.T) {
	t.Parallel()
	s := NewStack(t, "RATE_LIMIT_RPS=1")
	gw := s.StartGateway()
	s.StartWorker()
	keyB := s.NewKey("Partner B")
	// Ten calls at once, so that how many pass does not depend on how fast
	// the worker answers the ones that do. Each is sent once: a repeat would
	// be a call of its own to the limiter.
	const calls = 10
	results := make([]Response, calls)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range calls {
		wg.Go(func() {
			var err error
			if results[i], err = s.send(s.client, http.MethodGet, s.Key, envelope("getCustomer", m{"id": "ABC"})); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	limited := 0
	for _, r := range results {
		switch {
		case r.Status == 429:
			limited++
			if r.ErrorCode(t) != "rate_limited" || r.Header.Get("Retry-After") == "" {
				t.Fatalf("429 without code or Retry-After: %v %s", r.Header, r.Body)
			}
		case r.Status != 404 && r.Status != 202: // 202: let through, the worker was slow
			t.Fatalf("unexpected %d %s", r.Status, r.Body)
		}
	}
	// A burst of 1, then 1 per second: how many may pass depends on how long
	// the calls took to arrive, which only widens the bound (none would be
	// limited only if they took 9 s to arrive).
	allowed := calls - limited
	if limit := 1 + int(elapsed.Seconds()) + 1; limited == 0 || allowed > limit {
		t.Fatalf("%d of %d calls at once passed in %v at 1/s, want 1 to %d", allowed, calls, elapsed, limit)
	}
	// The limit is per key: another key is not affected.
	if r := s.Do(keyB, envelope("getCustomer", m{"id": "ABC"})); r.Status != 404 {
		t.Fatalf("other key: %d %s", r.Status, r.Body)
	}
	if got := value(scrape(t, gw), "oneoffice_rate_limited_total", nil); got != float64(limited) {
		t.Fatalf("oneoffice_rate_limited_total = %v, want %d", got, limited)
	}
}
