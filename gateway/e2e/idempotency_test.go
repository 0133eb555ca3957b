package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/protocol"
)

func TestReplayAndMismatch(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	first := s.Call("createCustomer", primer)
	again := s.Call("createCustomer", primer)
	if first.Status != 200 || again.Status != first.Status || string(again.Body) != string(first.Body) {
		t.Fatalf("replay differs:\n%d %s\n%d %s", first.Status, first.Body, again.Status, again.Body)
	}
	// A first call answered 202 pending gets its result replayed.
	if (first.Pending == 0 && first.Header.Get("Idempotent-Replayed") != "") || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay header: first %q, again %q", first.Header.Get("Idempotent-Replayed"), again.Header.Get("Idempotent-Replayed"))
	}
	// A derived create key with other params: 409 already_exists.
	other := m{"id": "ABC", "name": "Another name", "admin": m{"email": "test3@example.com"}}
	if r := s.Call("createCustomer", other); r.Status != 409 || r.ErrorCode(t) != "already_exists" {
		t.Fatalf("create with other params: %d %s", r.Status, r.Body)
	}
	s.Want(200, "createFirstOrder", m{"customer": "ABC", "id": "O1", "product": "oo-lite", "licenses": 1, "duration": "monthly"})
	// An Idempotency-Key replays a call that has no derived key...
	k := []string{"Idempotency-Key", "suspend-O1-1"}
	s1 := s.Call("suspendOrder", m{"id": "O1"}, k...)
	s.Want(200, "resumeOrder", m{"id": "O1"})
	s2 := s.Call("suspendOrder", m{"id": "O1"}, k...)
	if s2.Header.Get("Idempotent-Replayed") != "true" || string(s2.Body) != string(s1.Body) {
		t.Fatalf("keyed suspend not replayed: %s", s2.Body)
	}
	// ...and refuses another payload under the same key.
	if r := s.Call("suspendOrder", m{"id": "O2"}, k...); r.Status != 422 || r.ErrorCode(t) != "idempotency_key_reused" {
		t.Fatalf("reused key: %d %s", r.Status, r.Body)
	}
	// Without a key a call is not replayed: a suspend after a resume suspends again.
	if g := s.Want(200, "getOrder", m{"id": "O1"}); g["status"] != "active" {
		t.Fatalf("the replay changed the order: %v", g)
	}
	r := s.Call("suspendOrder", m{"id": "O1"})
	if r.Header.Get("Idempotent-Replayed") != "" || r.JSON(t)["status"] != "suspended" {
		t.Fatalf("unkeyed suspend: %v %s", r.Header, r.Body)
	}
	// Keys are scoped to the partner: B's same key and call run for B.
	keyB := s.NewKey("Partner B")
	if r := s.Do(keyB, envelope("createCustomer", primer)); r.Status != 200 ||
		(r.Pending == 0 && r.Header.Get("Idempotent-Replayed") != "") || r.JSON(t)["partner"] == first.JSON(t)["partner"] {
		t.Fatalf("partner B got partner A's result: %s", r.Body)
	}
}

func TestHundredParallelCallsFromSeparateConnections(t *testing.T) {
	t.Parallel()
	parallelCreates(t, 100, true)
}

func TestDatabaseIsTheTruthWhenRedisIsFlushed(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	rdb := redisClient(t, s.RedisURL)
	first := s.Want(200, "createCustomer", primer)
	rdb.FlushDB(t.Context())
	again := s.Call("createCustomer", primer)
	// The worker's ledger answers for the lost record: a replay, and says so.
	if again.Status != 200 || again.JSON(t)["id"] != first["id"] || (again.Pending == 0 && again.Header.Get("Idempotent-Replayed") != "true") {
		t.Fatalf("create after flush: %d %s", again.Status, again.Body)
	}
	rdb.FlushDB(t.Context())
	other := m{"id": "ABC", "name": "Another name", "admin": m{"email": "test3@example.com"}}
	if r := s.Call("createCustomer", other); r.Status != 409 || r.ErrorCode(t) != "already_exists" {
		t.Fatalf("other params after flush: %d %s", r.Status, r.Body)
	}
	if n := s.Count(`SELECT count(*) FROM tenants`); n != 1 {
		t.Fatalf("%d tenants, want 1", n)
	}
}

func TestRedeliveredCommandsProvisionOnce(t *testing.T) {
	t.Parallel()
	s := NewStack(t, "RENEWAL_WINDOW_DAYS=400")
	s.StartGateway()
	w := s.StartWorker()
	s.Want(200, "createCustomer", primer)
	order := s.Want(200, "createFirstOrder", m{"customer": "ABC", "id": "O1", "product": "oo-lite", "licenses": 1, "duration": "yearly"})
	w.Stop()

	var partner int64
	s.DB().QueryRow(t.Context(), `SELECT id FROM partners WHERE name = 'Partner A'`).Scan(&partner)
	conn, err := amqp.Dial(s.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	// The same message twice, as a crashed worker's unacked message comes back.
	for _, c := range []protocol.Command{
		{Method: "createRenewalOrder", Partner: partner, RequestID: "redeliver-1", Params: []byte(`{"parent":"O1","id":"R1"}`)},
		{Method: "createCustomer", Partner: partner, RequestID: "redeliver-2", Params: []byte(`{"id":"C2","name":"C2","admin":{"email":"c2@example.com"}}`)},
	} {
		for range 2 {
			if err := ch.Publish(amqpx.Exchange, amqpx.RoutingKey, true, false, c.Publishing("", "")); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitHandled(t, 4, s.StartWorker(), s.StartWorker())
	if n := s.Count(`SELECT count(*) FROM renewals`); n != 1 {
		t.Fatalf("%d renewal terms, want 1", n)
	}
	if n := s.Count(`SELECT count(*) FROM tenants WHERE remote_id = 'C2'`); n != 1 {
		t.Fatalf("%d customers C2, want 1", n)
	}
	g := s.Want(200, "getOrder", m{"id": "O1"})
	oneTerm := order["termEnd"].(float64) - order["termStart"].(float64)
	if got := g["termEnd"].(float64) - order["termStart"].(float64); got < 1.9*oneTerm || got > 2.1*oneTerm {
		t.Fatalf("termEnd moved by %v terms, want 2 in all", got/oneTerm)
	}
}

// waitHandled waits until workers have handled n commands to the end: answered
// or dead-lettered, not requeued. The queue's depth would not do: a message
// being handled is no longer in it, and its effect may not be committed yet.
func waitHandled(t *testing.T, n float64, workers ...*Proc) {
	t.Helper()
	const within = 60 * time.Second
	requeued := map[string]string{"outcome": "requeued"}
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		var done float64
		for _, w := range workers {
			wm := scrape(t, w)
			done += max(0, value(wm, "oneoffice_worker_commands_total", nil)) -
				max(0, value(wm, "oneoffice_worker_commands_total", requeued))
		}
		if done >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the workers handled %v of %v commands in %v", done, n, within)
		}
	}
}

func TestPendingThenResult(t *testing.T) {
	t.Parallel()
	s := NewStack(t, "RPC_TIMEOUT=1s")
	s.StartGateway()
	// The 202 comes at the deadline, not after a hang: the client's timeout
	// catches a hang; the deadline itself is the api package's test, on a
	// fake clock.
	r := s.CallOnce("createCustomer", primer)
	if r.Status != 202 || r.JSON(t)["status"] != "pending" || r.JSON(t)["requestId"] != r.Header.Get("X-Request-Id") {
		t.Fatalf("no worker: %d %s", r.Status, r.Body)
	}
	if r := s.CallOnce("createCustomer", primer); r.Status != 409 || r.ErrorCode(t) != "request_in_progress" {
		t.Fatalf("repeat while pending: %d %s", r.Status, r.Body)
	}
	s.StartWorker()
	r = s.Eventually(200, settleWithin, "createCustomer", primer)
	if r.JSON(t)["remoteId"] != "ABC" || r.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("result after 202: %s", r.Body)
	}
	if n := s.Count(`SELECT count(*) FROM tenants`); n != 1 {
		t.Fatalf("%d tenants", n)
	}
}

// serialOutcome simulates calls on an active order in one serial order and
// returns each call's status code and resulting order status, and the final status.
func serialOutcome(order []string) (map[string]string, string) {
	state, out := "active", map[string]string{}
	for _, op := range order {
		switch {
		case state == "cancelled" && op != "cancelOrder":
			out[op] = "409"
		case op == "cancelOrder":
			state = "cancelled"
		case op == "suspendOrder":
			state = "suspended"
		case op == "resumeOrder":
			state = "active"
		}
		if out[op] == "" {
			out[op] = state
		}
	}
	return out, state
}

func permutations(a []string) [][]string {
	if len(a) <= 1 {
		return [][]string{a}
	}
	var out [][]string
	for i := range a {
		rest := append(append([]string{}, a[:i]...), a[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]string{a[i]}, p...))
		}
	}
	return out
}

func TestRacingMutationsOfOneOrder(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	s.StartWorker()
	s.Want(200, "createCustomer", primer)
	ops := []string{"suspendOrder", "cancelOrder", "resumeOrder"}
	sets := [][]string{ops, {"suspendOrder", "resumeOrder"}}
	for round := range 50 {
		set := sets[round%2]
		id := "O" + strings.Repeat("x", round%3) + time.Now().Format("150405.000000")
		s.Want(200, "createFirstOrder", m{"customer": "ABC", "id": id, "product": "oo-lite", "licenses": 1, "duration": "monthly"})
		got := map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, op := range set {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// With a key of its own, a call answered 202 pending and
				// repeated gets the answer of its one execution (SPEC
				// sections 3 and 5), not that of a second one.
				r, err := s.settle(s.client, http.MethodGet, s.Key, envelope(op, m{"id": id}), "Idempotency-Key", op+"-"+id)
				if err != nil {
					t.Error(err)
					return
				}
				v := "409"
				if r.Status == 200 {
					v = r.JSON(t)["status"].(string)
				} else if r.Status != 409 || r.ErrorCode(t) != "order_cancelled" {
					t.Errorf("%s: %d %s", op, r.Status, r.Body)
				}
				mu.Lock()
				got[op] = v
				mu.Unlock()
			}()
		}
		wg.Wait()
		var final string
		s.DB().QueryRow(t.Context(), `SELECT status FROM orders WHERE remote_id = $1`, id).Scan(&final)
		ok := false
		for _, p := range permutations(set) {
			want, wantFinal := serialOutcome(p)
			if wantFinal == final && equalMaps(want, got) {
				ok = true
				break
			}
		}
		if !ok {
			t.Fatalf("round %d: answers %v and final %q match no serial order of %v", round, got, final, set)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func redisClient(t *testing.T, url string) *redis.Client {
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisDownAnswers503AndEnqueuesNothing(t *testing.T) {
	s := NewStack(t)
	opt, _ := redis.ParseURL(s.RedisURL)
	proxy := NewProxy(t, opt.Addr)
	s.StartGateway("REDIS_URL=redis://" + proxy.Addr + "/" + strings.TrimPrefix(s.RedisURL[strings.LastIndex(s.RedisURL, "/"):], "/"))
	s.StartWorker()
	s.Want(200, "createCustomer", primer)
	proxy.Cut()
	r := s.Call("createCustomer", m{"id": "C2", "name": "C2", "admin": m{"email": "c2@example.com"}})
	if r.Status != 503 || r.ErrorCode(t) != "unavailable" {
		t.Fatalf("Redis down: %d %s", r.Status, r.Body)
	}
	time.Sleep(500 * time.Millisecond)
	if n := s.Count(`SELECT count(*) FROM tenants WHERE remote_id = 'C2'`); n != 0 {
		t.Fatal("a command was enqueued while Redis was down")
	}
	proxy.Restore()
	s.Eventually(200, settleWithin, "createCustomer", m{"id": "C2", "name": "C2", "admin": m{"email": "c2@example.com"}})
}

func TestBrokerDownAnswers503(t *testing.T) {
	s := NewStack(t)
	proxy := NewProxy(t, "127.0.0.1:5672")
	vhost := s.AMQPURL[strings.LastIndex(s.AMQPURL, "/"):]
	gw := s.StartGateway("AMQP_URL=amqp://guest:guest@" + proxy.Addr + vhost)
	s.StartWorker()
	s.Want(200, "createCustomer", primer)
	proxy.Cut()
	// Down means the gateway saw its connection go: a call it had already
	// written to the dead socket would rightly be a 202 (SPEC section 4).
	waitMetric(t, gw, "oneoffice_gateway_broker_connected", 0)
	// At once, not after a hang (the client's timeout would catch one).
	r := s.CallOnce("createCustomer", m{"id": "C2", "name": "C2", "admin": m{"email": "c2@example.com"}})
	if r.Status != 503 || r.ErrorCode(t) != "unavailable" {
		t.Fatalf("broker down: %d %s", r.Status, r.Body)
	}
	proxy.Restore()
	s.Eventually(200, settleWithin, "createCustomer", m{"id": "C2", "name": "C2", "admin": m{"email": "c2@example.com"}})
	if n := s.Count(`SELECT count(*) FROM tenants`); n != 2 {
		t.Fatalf("%d tenants, want 2", n)
	}
}

// waitMetric waits until the unlabelled metric name of p has value want.
func waitMetric(t *testing.T, p *Proc, name string, want float64) {
	t.Helper()
	const within = 30 * time.Second
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		got := value(scrape(t, p), name, nil)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v after %v, want %v", name, got, within, want)
		}
	}
}

// databaseCut starts a gateway and a worker that reaches PostgreSQL through a
// proxy, provisions the primer customer, then cuts the proxy.
func databaseCut(t *testing.T) (*Stack, *Proxy, *Proc) {
	s := NewStack(t, "RPC_TIMEOUT=1s")
	proxy := NewProxy(t, "127.0.0.1:5432")
	s.StartGateway()
	dbName := s.DBURL[strings.LastIndex(s.DBURL, "/"):]
	w := s.StartWorker("DATABASE_URL=postgres://postgres@" + proxy.Addr + dbName)
	s.Want(200, "createCustomer", primer)
	proxy.Cut()
	return s, proxy, w
}

func TestDatabaseOutageLosesNoCommand(t *testing.T) {
	s, proxy, w := databaseCut(t)
	c2 := m{"id": "C2", "name": "C2", "admin": m{"email": "c2@example.com"}}
	if r := s.CallOnce("createCustomer", c2); r.Status != 202 {
		t.Fatalf("database down: %d %s, want 202", r.Status, r.Body)
	}
	time.Sleep(3 * time.Second) // the outage: the worker retries meanwhile
	proxy.Restore()
	s.Eventually(200, settleWithin, "createCustomer", c2)
	if n := s.Count(`SELECT count(*) FROM tenants`); n != 2 {
		t.Fatalf("%d tenants, want 2", n)
	}
	wm := scrape(t, w)
	if value(wm, "oneoffice_worker_dead_lettered_total", nil) != 0 || value(wm, "oneoffice_worker_retries_total", map[string]string{"dependency": "database"}) < 1 {
		t.Log(w.Log())
		t.Fatalf("dead-lettered %v, retries %v", value(wm, "oneoffice_worker_dead_lettered_total", nil),
			value(wm, "oneoffice_worker_retries_total", map[string]string{"dependency": "database"}))
	}
}

// Creates that pile up at the worker's insert while the database is away go
// through failed batch statements, alone and in batches again once it is back;
// each ends provisioned exactly once and none is dead-lettered.
func TestDatabaseOutageDuringConcurrentCreatesLosesNoCommand(t *testing.T) {
	s, proxy, w := databaseCut(t)
	const n = 20
	params := make([]m, n)
	results := make([]Response, n)
	var wg sync.WaitGroup
	for i := range n {
		params[i] = m{"id": fmt.Sprintf("D%02d", i), "name": fmt.Sprintf("Outage %d", i),
			"admin": m{"email": fmt.Sprintf("d%d@example.com", i)}}
		wg.Go(func() {
			var err error
			if results[i], err = s.send(s.client, http.MethodGet, s.Key, envelope("createCustomer", params[i])); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.Status != 202 {
			t.Errorf("create %d with the database down: %d %s, want 202", i, r.Status, r.Body)
		}
	}
	time.Sleep(2 * time.Second) // the outage
	proxy.Restore()
	for i, p := range params {
		r := s.Eventually(200, settleWithin, "createCustomer", p)
		if got := r.JSON(t); got["remoteId"] != p["id"] || got["name"] != p["name"] {
			t.Errorf("create %d: %s", i, r.Body)
		}
	}
	if rows, ids := s.Count(`SELECT count(*) FROM tenants`), s.Count(`SELECT count(DISTINCT remote_id) FROM tenants`); rows != n+1 || ids != n+1 {
		t.Fatalf("%d tenant rows with %d ids, want %d", rows, ids, n+1)
	}
	wm := scrape(t, w)
	if d := value(wm, "oneoffice_worker_dead_lettered_total", nil); d != 0 {
		t.Log(w.Log())
		t.Fatalf("%v commands dead-lettered", d)
	}
	t.Logf("%v customer insert statements", value(wm, "oneoffice_worker_customer_insert_rows", nil))
}

func TestRefusedCreateIsNotReplayed(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	order := m{"customer": "ABC", "id": "O1", "product": "oo-lite", "licenses": 1, "duration": "monthly"}
	if r := s.Call("createFirstOrder", order); r.Status != 404 || r.ErrorCode(t) != "customer_not_found" {
		t.Fatalf("order before its customer: %d %s", r.Status, r.Body)
	}
	s.Want(200, "createCustomer", primer)
	// The marketplace's retry of the same call now succeeds.
	if r := s.Call("createFirstOrder", order); r.Status != 200 || (r.Pending == 0 && r.Header.Get("Idempotent-Replayed") != "") {
		t.Fatalf("retry after the cause was fixed: %d %s", r.Status, r.Body)
	}
	// With an explicit key, the partner asked for the first answer: it is kept.
	k := []string{"Idempotency-Key", "explicit-1"}
	first := s.Call("createFirstOrder", m{"customer": "NOPE", "id": "O2", "product": "oo-lite", "licenses": 1, "duration": "monthly"}, k...)
	again := s.Call("createFirstOrder", m{"customer": "NOPE", "id": "O2", "product": "oo-lite", "licenses": 1, "duration": "monthly"}, k...)
	if first.Status != 404 || again.Status != 404 || again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(first.Body) {
		t.Fatalf("explicit key: %d %s / %d %s", first.Status, first.Body, again.Status, again.Body)
	}
}

func TestWorkerWaitsForTheDatabaseAtStart(t *testing.T) {
	s := NewStack(t)
	proxy := NewProxy(t, "127.0.0.1:5432")
	proxy.Cut()
	s.StartGateway()
	dbName := s.DBURL[strings.LastIndex(s.DBURL, "/"):]
	w := s.launch(bins.Worker(), []string{"DATABASE_URL=postgres://postgres@" + proxy.Addr + dbName})
	// The database comes back once the worker has found it missing, however
	// long the worker took to get there.
	const within = 60 * time.Second
	for deadline := time.Now().Add(within); !strings.Contains(w.Log(), "database not ready, retrying"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not report the database missing within %v:\n%s", within, w.Log())
		}
	}
	proxy.Restore()
	if err := w.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Want(200, "createCustomer", primer)
}
