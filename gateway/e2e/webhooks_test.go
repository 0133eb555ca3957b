package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// webhookKey is the WEBHOOK_SECRET_KEY of the test stacks.
const webhookKey = testenv.WebhookKey

// arriveWithin bounds the wait for deliveries the contract promises; with
// the short retry schedule below they come in well under a second each.
const arriveWithin = 90 * time.Second

// webhookEnv is a stack whose retries take milliseconds rather than the
// 24 h schedule, and whose endpoints may be the tests' http receivers on
// the loopback. Deliveries time out after the default 5 s.
var webhookEnv = []string{
	"WEBHOOK_SECRET_KEY=" + webhookKey, "WEBHOOK_ALLOW_HOSTS=127.0.0.1",
	"WEBHOOK_RETRY_MIN=100ms", "WEBHOOK_RETRY_MAX=400ms", "WEBHOOK_POLL_INTERVAL=100ms",
}

// call is one command of a test and what the partner got.
type call struct {
	method  string
	params  m
	orderID string
	resp    Response
}

// run makes the calls with key, in order, each to its result.
func (s *Stack) run(key string, calls []call) []call {
	s.t.Helper()
	for i := range calls {
		calls[i].resp = s.Do(key, envelope(calls[i].method, calls[i].params))
	}
	return calls
}

// commands are mutating calls of every family, refusals among them, and a
// read, which makes no event.
func commands() []call {
	return []call{
		{method: "createCustomer", params: m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}},
		{method: "createFirstOrder", orderID: "O1",
			params: m{"customer": "C1", "id": "O1", "product": "oo-std", "licenses": 5, "duration": "monthly"}},
		{method: "suspendOrder", orderID: "O1", params: m{"id": "O1"}},
		{method: "resumeOrder", orderID: "O1", params: m{"id": "O1"}},
		{method: "updateOrder", orderID: "O1", params: m{"id": "O1", "licenses": 7}},
		{method: "createRenewalOrder", orderID: "O1", params: m{"parent": "O1", "id": "R1"}}, // 422 renewal_too_early
		{method: "cancelOrder", orderID: "O1", params: m{"id": "O1"}},
		{method: "cancelOrder", orderID: "NOPE", params: m{"id": "NOPE"}}, // 404
		{method: "getOrder", params: m{"id": "O1"}},                       // a read: no event
		{method: "createUser", params: m{"email": "u@example.com"}},
		{method: "deleteUser", params: m{"email": "u@example.com"}},
	}
}

// checkEvents checks that each mutating call's event arrived once in got,
// telling what the partner was answered, and that the events of one order
// arrived in the order of the calls.
func checkEvents(t *testing.T, calls []call, got []delivery) {
	t.Helper()
	byRequest := map[string][]delivery{}
	for _, d := range got {
		byRequest[d.Event.RequestID] = append(byRequest[d.Event.RequestID], d)
	}
	var orderSeen []string
	for _, d := range got {
		if d.Event.OrderID == "O1" {
			orderSeen = append(orderSeen, d.Event.RequestID)
		}
	}
	var orderWant []string
	mutating := 0
	for _, c := range calls {
		id := requestID(t, c.resp)
		ds := byRequest[id]
		if c.method == "getOrder" {
			if len(ds) != 0 {
				t.Errorf("getOrder made an event: %s", ds[0].Body)
			}
			continue
		}
		mutating++
		if len(ds) != 1 {
			t.Errorf("%s %v: %d deliveries of its event, want 1", c.method, c.params, len(ds))
			continue
		}
		e := ds[0].Event
		var sent, want any
		_ = json.Unmarshal(e.Response.Body, &sent)
		_ = json.Unmarshal(c.resp.Body, &want)
		if w, ok := want.(map[string]any); ok {
			delete(w, "livemode") // the gateway's, added to the answer, not the worker's result
		}
		if e.Type != "command.succeeded" || e.Method != c.method || e.OrderID != c.orderID ||
			e.Response.Status != c.resp.Status || !jsonEqual(sent, want) || e.OccurredAt == 0 {
			t.Errorf("%s: event %s, want command.succeeded of %s, order %q, response %d %s",
				c.method, ds[0].Body, c.method, c.orderID, c.resp.Status, c.resp.Body)
		}
		if !strings.HasPrefix(ds[0].ID, "msg_") {
			t.Errorf("webhook-id %q: want msg_...", ds[0].ID)
		}
		if c.orderID == "O1" {
			orderWant = append(orderWant, id)
		}
	}
	if len(got) != mutating {
		t.Errorf("%d deliveries, want %d: %s", len(got), mutating, summary(got))
	}
	if !slices.Equal(orderSeen, orderWant) {
		t.Errorf("events of order O1 arrived as %v, want the calls' order %v", orderSeen, orderWant)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestWebhookEveryCommandArrivesOnceSigned(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	s := webhookStack(t, r)
	calls := s.run(s.Key, commands())
	if calls[5].resp.Status != 422 || calls[7].resp.Status != 404 {
		t.Fatalf("the refusals were answered %d and %d, want 422 and 404", calls[5].resp.Status, calls[7].resp.Status)
	}
	want := len(calls) - 1
	r.waitFor("an event per command", func(got []delivery) bool { return len(distinctIDs(got)) >= want })
	// Every event is delivered at its first attempt: nothing is left to
	// come twice.
	s.waitEventsDone(want)
	checkEvents(t, calls, r.deliveries())
	if n := s.Count(`SELECT count(*) FROM webhook_events WHERE status = 'delivered' AND attempts = 1`); n != want {
		t.Fatalf("%d events delivered at their first attempt, want %d", n, want)
	}

	// webhooks test sends a signed ping and prints the endpoint's status.
	if out := s.admin("webhooks", "test", "--partner", "Partner A"); out != "200 OK" {
		t.Fatalf("webhooks test printed %q, want 200 OK", out)
	}
	r.waitFor("the ping", func(got []delivery) bool {
		return slices.ContainsFunc(got, func(d delivery) bool { return d.Event.Type == "ping" })
	})
}

// waitEventsDone waits until n events exist and none is pending.
func (s *Stack) waitEventsDone(n int) {
	s.t.Helper()
	deadline := time.Now().Add(arriveWithin)
	for s.Count(`SELECT count(*) FROM webhook_events`) < n ||
		s.Count(`SELECT count(*) FROM webhook_events WHERE status = 'pending'`) > 0 {
		if time.Now().After(deadline) {
			s.t.Fatalf("events still pending after %v", arriveWithin)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWebhookRetriedUntil2xxWithTheSameID(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	r.answerWith(func(_ delivery, n int) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s := webhookStack(t, r)
	resp := s.Call("createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}})
	id := requestID(t, resp)
	got := r.waitFor("a fourth attempt", func(got []delivery) bool { return len(got) >= 4 })
	s.waitEvent(id, "delivered", func(st string, _, _ int, _ string) bool { return st == "delivered" })
	got = r.deliveries()
	if len(got) != 4 {
		t.Fatalf("%d attempts, want 4 (three 500s, then 200): %s", len(got), summary(got))
	}
	for _, d := range got {
		if d.ID != got[0].ID || d.Event.RequestID != id || string(d.Body) != string(got[0].Body) {
			t.Fatalf("attempts differ: %s", summary(got))
		}
	}
	if _, n, ls, _ := s.eventState(id); n != 4 || ls != 200 {
		t.Fatalf("event row: %d attempts, last status %d; want 4 and 200", n, ls)
	}
}

func TestWebhookReceiverDownForAMinuteLosesNothing(t *testing.T) {
	r := newReceiver(t)
	s := webhookStack(t, r, "WEBHOOK_RETRY_MAX=5s") // the back-off grows to 5 s pauses
	r.stop()
	var ids []string
	for _, c := range commands()[:4] {
		ids = append(ids, requestID(t, s.Call(c.method, c.params)))
	}
	// The endpoint refuses connections for a minute after the last event.
	// The later events of order O1 wait for its first (ids[1]).
	for _, id := range ids[:2] {
		s.waitEvent(id, "failed attempts", func(_ string, n, _ int, le string) bool { return n >= 3 && le != "" })
	}
	deadline := time.Now().Add(2 * time.Minute)
	for s.Count(`SELECT count(*) FROM webhook_events WHERE occurred_at > now() - interval '1 minute'`) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the events do not age: is the database's clock moving?")
		}
		time.Sleep(time.Second)
	}
	if n := s.Count(`SELECT count(*) FROM webhook_events WHERE status = 'pending'`); n != len(ids) {
		t.Fatalf("%d events pending after a minute, want all %d", n, len(ids))
	}
	r.start()
	got := r.waitFor("every event", func(got []delivery) bool { return len(distinctIDs(got)) >= len(ids) })
	s.waitEventsDone(len(ids))
	for _, id := range ids {
		if n := len(slices.DeleteFunc(slices.Clone(got), func(d delivery) bool { return d.Event.RequestID != id })); n < 1 {
			t.Errorf("request %s: no event", id)
		}
	}
	if n := s.Count(`SELECT count(*) FROM webhook_events WHERE status = 'delivered'`); n != len(ids) {
		t.Fatalf("%d events delivered, want %d", n, len(ids))
	}
}

func TestWebhookDispatcherKilledMidDeliveryLosesNothing(t *testing.T) {
	r := newReceiver(t)
	hold := make(chan struct{})
	var once sync.Once
	r.answerWith(func(_ delivery, n int) int {
		if n == 1 {
			<-hold // the first attempt of each event hangs until the worker is dead
		}
		return http.StatusOK
	})
	t.Cleanup(func() { once.Do(func() { close(hold) }) })
	// A time-out far longer than the test takes to kill the worker: the
	// first attempts are still waiting for their answer when it dies.
	s := NewStack(t, append(slices.Clone(webhookEnv), "WEBHOOK_TIMEOUT=10s")...)
	w := s.StartWorker()
	s.StartGateway()
	r.trust(s.setEndpoint("Partner A", r.URL()))
	var ids []string
	for _, id := range []string{"C1", "C2", "C3"} { // no order: all in flight at once
		ids = append(ids, requestID(t, s.Call("createCustomer", m{"id": id, "name": id, "admin": m{"email": "a@example.com"}})))
	}
	got := r.waitFor("the first attempts", func(got []delivery) bool { return len(got) >= len(ids) })
	if len(distinctIDs(got)) != len(ids) {
		t.Fatalf("before the kill: %s, want one first attempt of each event", summary(got))
	}
	if err := w.Cmd().Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-w.Done()
	once.Do(func() { close(hold) })
	s.StartWorker()
	s.waitEventsDone(len(ids))
	got = r.deliveries()
	for _, id := range ids {
		var webhookIDs []string
		for _, d := range got {
			if d.Event.RequestID == id {
				webhookIDs = append(webhookIDs, d.ID)
			}
		}
		same := !slices.ContainsFunc(webhookIDs, func(w string) bool { return w != webhookIDs[0] })
		if len(webhookIDs) < 2 || !same {
			t.Errorf("request %s: deliveries with webhook-ids %v; want the interrupted one again, same id", id, webhookIDs)
		}
	}
}

func TestWebhookSlowEndpointDelaysNoOtherPartner(t *testing.T) {
	t.Parallel()
	slow, fast := newReceiver(t), newReceiver(t)
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	slow.answerWith(func(delivery, int) int {
		<-hold // never answers while the test runs: every attempt times out
		return http.StatusOK
	})
	s := webhookStack(t, slow, "WEBHOOK_CONCURRENCY=4", "WEBHOOK_ENDPOINT_CONCURRENCY=2")
	keyB := s.NewKey("Partner B")
	fast.trust(s.setEndpoint("Partner B", fast.URL()))
	s.run(s.Key, commands()[:6])
	slow.waitFor("the slow endpoint's share of attempts", func(got []delivery) bool { return len(got) >= 2 })
	callsB := s.run(keyB, commands()[:3])
	fast.waitFor("B's events", func(got []delivery) bool { return len(got) >= len(callsB) })
	checkEvents(t, callsB, fast.deliveries())
	if n := s.Count(`SELECT count(*) FROM webhook_events e JOIN partners p ON p.id = e.partner_id
		WHERE p.name = 'Partner A' AND status = 'delivered'`); n != 0 {
		t.Fatalf("%d of the slow endpoint's events delivered, want none yet", n)
	}
}

func TestWebhookOfA202CommandArrivesWhenItCompletes(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	s := NewStack(t, webhookEnv...)
	s.StartWorker()
	s.StartGateway("RPC_TIMEOUT=300ms")
	r.trust(s.setEndpoint("Partner A", r.URL()))
	// The command waits on a lock the test holds: the gateway's deadline
	// passes first.
	ctx := context.Background()
	tx, err := s.DB().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE tenants IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	params := m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}
	first := s.CallOnce("createCustomer", params)
	if first.Status != http.StatusAccepted {
		t.Fatalf("createCustomer held by a lock: %d %s, want 202", first.Status, first.Body)
	}
	if len(r.deliveries()) != 0 {
		t.Fatal("an event arrived before its command completed")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := r.waitFor("the event", func(got []delivery) bool { return len(got) >= 1 })
	e := got[0].Event
	if e.RequestID != requestID(t, first) || e.Method != "createCustomer" || e.Response.Status != 200 {
		t.Fatalf("event %s, want the 200 of request %s", got[0].Body, requestID(t, first))
	}
}

func TestWebhookOtherPartnersEndpointGetsNoneOfYours(t *testing.T) {
	t.Parallel()
	ra, rb := newReceiver(t), newReceiver(t)
	s := webhookStack(t, ra)
	keyB := s.NewKey("Partner B")
	rb.trust(s.setEndpoint("Partner B", rb.URL()))
	keyC := s.NewKey("Partner C") // no endpoint
	callsA := s.run(s.Key, commands()[:4])
	callsB := s.run(keyB, commands()[:3]) // the same ids, scoped to B
	s.run(keyC, commands()[:2])
	ra.waitFor("A's events", func(got []delivery) bool { return len(got) >= len(callsA) })
	rb.waitFor("B's events", func(got []delivery) bool { return len(got) >= len(callsB) })
	s.waitEventsDone(len(callsA) + len(callsB))
	checkEvents(t, callsA, ra.deliveries())
	checkEvents(t, callsB, rb.deliveries())
	if n := s.Count(`SELECT count(*) FROM webhook_events e JOIN partners p ON p.id = e.partner_id
		WHERE p.name = 'Partner C'`); n != 0 {
		t.Fatalf("%d events of a partner without an endpoint", n)
	}
}

func TestWebhookSSRFRefusals(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	s := webhookStack(t, nil)
	noAllow := []string{"WEBHOOK_ALLOW_HOSTS="}
	_, port, _ := net.SplitHostPort(r.addr)
	for url, rule := range map[string]string{
		r.URL():                            "must be https",
		"https://127.0.0.1:" + port + "/x": "private, loopback or link-local",
		"https://169.254.169.254/latest":   "private, loopback or link-local",
		"https://localhost:" + port + "/x": "loopback name",
		"https://u:p@hooks.example.com/x":  "user or password",
		"file:///etc/passwd":               "absolute https URL",
	} {
		err := s.adminErr(noAllow, "webhooks", "set", "--partner", "Partner A", "--url", url)
		if !strings.Contains(err.Error(), rule) {
			t.Errorf("webhooks set --url %s: %v, want a refusal naming %q", url, err, rule)
		}
	}
	if n := s.Count(`SELECT count(*) FROM webhook_endpoints`); n != 0 {
		t.Fatalf("%d endpoints stored after refusals", n)
	}

	// A name that resolved to a public address when the endpoint was set,
	// and to the loopback now (DNS rebinding), is refused when dialled.
	rebound := newReceiver(t)
	r.trust(s.setEndpoint("Partner A", r.URL()))
	_, reboundPort, _ := net.SplitHostPort(rebound.addr)
	if _, err := s.DB().Exec(context.Background(), `UPDATE webhook_endpoints SET url = $1`,
		"https://localhost:"+reboundPort+"/hooks"); err != nil {
		t.Fatal(err)
	}
	id := requestID(t, s.Call("createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}))
	s.waitEvent(id, "a refused attempt", func(st string, n, _ int, le string) bool {
		return n >= 2 && strings.Contains(le, "refused by the webhook policy")
	})
	if got := append(rebound.deliveries(), r.deliveries()...); len(got) != 0 {
		t.Fatalf("a refused address was reached: %s", summary(got))
	}

	// A redirect is an answer, not followed.
	r.answerWith(func(d delivery, _ int) int {
		if d.Path == "/hooks" {
			return http.StatusFound
		}
		return http.StatusOK
	})
	if _, err := s.DB().Exec(context.Background(), `UPDATE webhook_endpoints SET url = $1`, r.URL()); err != nil {
		t.Fatal(err)
	}
	s.waitEvent(id, "302 answers", func(st string, n, ls int, _ string) bool { return ls == http.StatusFound && n >= 4 })
	for _, d := range r.deliveries() {
		if d.Path != "/hooks" {
			t.Fatalf("the redirect to %s was followed", d.Path)
		}
	}
}

func TestWebhook410DisablesAndReplaySendsAgain(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	r.answerWith(func(delivery, int) int { return http.StatusGone })
	s := webhookStack(t, r)
	id := requestID(t, s.Call("createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}))
	s.waitEvent(id, "failed", func(st string, _, ls int, _ string) bool { return st == "failed" && ls == http.StatusGone })
	if n := s.Count(`SELECT count(*) FROM webhook_endpoints WHERE enabled`); n != 0 {
		t.Fatal("the endpoint is still enabled after a 410")
	}
	// A disabled endpoint gets no new events.
	s.Want(200, "createFirstOrder", m{"customer": "C1", "id": "O1", "product": "oo-std", "licenses": 5, "duration": "monthly"})
	if n := s.Count(`SELECT count(*) FROM webhook_events`); n != 1 {
		t.Fatalf("%d events after the endpoint was disabled, want the 1 before", n)
	}
	if len(r.deliveries()) != 1 {
		t.Fatalf("%d deliveries, want the one answered 410", len(r.deliveries()))
	}
	failed := s.admin("webhooks", "failed", "--partner", "Partner A", "--since", "1h")
	if !strings.Contains(failed, r.deliveries()[0].ID) || !strings.Contains(failed, "last_status=410") {
		t.Fatalf("webhooks failed printed %q, want the event answered 410", failed)
	}
	if err := s.adminErr(nil, "webhooks", "test", "--partner", "Partner A"); !strings.Contains(err.Error(), "410") {
		t.Fatalf("webhooks test of a 410 endpoint: %v", err)
	}

	// Set again (a new secret) and replay: the event arrives, same id.
	r.answerWith(nil)
	r.trust(s.setEndpoint("Partner A", r.URL()))
	if out := s.admin("webhooks", "replay", "--partner", "Partner A", "--since", "1h"); out != "events replayed: 1" {
		t.Fatalf("webhooks replay printed %q", out)
	}
	s.waitEvent(id, "delivered", func(st string, _, _ int, _ string) bool { return st == "delivered" })
	got := r.deliveries()
	if last := got[len(got)-1]; last.ID != got[0].ID || last.Event.RequestID != id {
		t.Fatalf("replayed delivery %s, want the first one's id %s", last.ID, got[0].ID)
	}
	// webhooks disable stops the events again.
	s.admin("webhooks", "disable", "--partner", "Partner A")
	s.Want(200, "suspendOrder", m{"id": "O1"})
	if n := s.Count(`SELECT count(*) FROM webhook_events`); n != 1 {
		t.Fatalf("%d events after webhooks disable, want 1", n)
	}
}
