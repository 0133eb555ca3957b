package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// inParallel runs f(i) for i in [0, n) on workers goroutines and fails the
// test with the first error.
func inParallel(t *testing.T, n, workers int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// callAs makes a call with key from any goroutine, following a 202 until the
// result is there, and checks its status.
func (s *Stack) callAs(key string, want int, method string, params any) (Response, error) {
	r, err := s.settle(s.client, http.MethodGet, key, envelope(method, params))
	if err == nil && r.Status != want {
		err = fmt.Errorf("%s %v: %d %s, want %d", method, params, r.Status, r.Body, want)
	}
	return r, err
}

// commandsQueued is the number of commands waiting in the stack's queue,
// a batch message counted as the commands it carries. It reads each message
// unacked, then closes its channel, which gives them all back.
func commandsQueued(t *testing.T, s *Stack) int {
	t.Helper()
	ch := brokerChannel(t, s)
	defer ch.Close()
	n := 0
	for {
		d, ok, err := ch.Get(amqpx.Queue, false)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return n
		}
		if d.Type != protocol.BatchType {
			n++
			continue
		}
		members, err := protocol.DecodeBatch(&d)
		if err != nil {
			t.Fatal(err)
		}
		n += len(members)
	}
}

// walk reads every page of a list and returns the values of field of its
// rows in the order given; between runs after each page but the last.
func (s *Stack) walk(key, method string, filters m, limit int, field string, between func()) []string {
	s.t.Helper()
	var got []string
	params := m{"limit": limit}
	for k, v := range filters {
		params[k] = v
	}
	for {
		r := s.Do(key, envelope(method, params))
		if r.Status != 200 {
			s.t.Fatalf("%s %v: %d %s", method, params, r.Status, r.Body)
		}
		page := r.JSON(s.t)
		data := page["data"].([]any)
		for _, d := range data {
			got = append(got, fmt.Sprint(d.(m)[field]))
		}
		next, ok := page["nextCursor"].(string)
		if !ok {
			if page["nextCursor"] != nil || len(data) > limit {
				s.t.Fatalf("last page: %s", r.Body)
			}
			return got
		}
		if len(data) != limit {
			s.t.Fatalf("a page of %d (limit %d) with a next cursor", len(data), limit)
		}
		params["cursor"] = next
		if between != nil {
			between()
		}
	}
}

// TestReadsAreAnsweredWithEveryWorkerStopped: with no worker running and
// commands waiting in the queue, every read is answered at once from the
// database, with the shapes, errors and partner scoping of SPEC section 2.
func TestReadsAreAnsweredWithEveryWorkerStopped(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway("RPC_TIMEOUT=300ms")
	w := s.StartWorker()
	s.Want(200, "createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}, "X-Request-Id", "req-c1")
	order := s.Want(200, "createFirstOrder", m{"customer": "C1", "id": "O1", "product": "oo-std", "licenses": 3, "duration": "monthly"})
	s.Want(200, "createUser", m{"email": "u@example.com"})
	keyB := s.NewKey("Partner B")
	w.Stop()

	// Commands queue up: each is answered 202, nothing runs them.
	const queued = 40
	inParallel(t, queued, 8, func(i int) error {
		r, err := s.send(s.client, http.MethodGet, s.Key, envelope("createCustomer",
			m{"id": fmt.Sprint("Q", i), "name": "Q", "admin": m{"email": "q@example.com"}}), "X-Request-Id", fmt.Sprint("req-q", i))
		if err == nil && r.Status != http.StatusAccepted {
			err = fmt.Errorf("createCustomer with no worker: %d %s", r.Status, r.Body)
		}
		return err
	})
	if n := commandsQueued(t, s); n != queued {
		t.Fatalf("%d commands queued, want %d", n, queued)
	}

	// Every read, answered beside the queue: once, not a 202.
	if g := s.JSON(t, s.CallOnce("getOrder", m{"id": "O1"})); g["id"] != "O1" || g["licenses"] != order["licenses"] || g["updatedAt"] != order["updatedAt"] {
		t.Errorf("getOrder %v, want %v", g, order)
	}
	if g := s.JSON(t, s.CallOnce("getCustomer", m{"id": "C1"})); g["remoteId"] != "C1" {
		t.Errorf("getCustomer %v", g)
	}
	if g := s.JSON(t, s.CallOnce("getRequest", m{"id": "req-c1"})); g["status"] != "succeeded" || g["method"] != "createCustomer" {
		t.Errorf("getRequest of a recorded call %v", g)
	}
	if g := s.JSON(t, s.CallOnce("getRequest", m{"id": "req-q7"})); g["status"] != "pending" || g["method"] != "createCustomer" || g["response"] != nil {
		t.Errorf("getRequest of a queued call %v", g)
	}
	if g := s.JSON(t, s.CallOnce("getOrders", m{"ids": []string{"O1", "O2"}})); len(g["data"].([]any)) != 1 || g["missing"].([]any)[0] != "O2" {
		t.Errorf("getOrders %v", g)
	}
	if g := s.JSON(t, s.CallOnce("listCustomers", m{})); len(g["data"].([]any)) != 1 || g["nextCursor"] != nil {
		t.Errorf("listCustomers %v", g)
	}
	if g := s.JSON(t, s.CallOnce("listOrders", m{"customer": "C1", "status": "active"})); len(g["data"].([]any)) != 1 {
		t.Errorf("listOrders %v", g)
	}
	if g := s.JSON(t, s.CallOnce("listUsers", m{})); len(g["data"].([]any)) != 1 || g["data"].([]any)[0].(m)["email"] != "u@example.com" {
		t.Errorf("listUsers %v", g)
	}
	if g := s.JSON(t, s.CallOnce("listRequests", m{"method": "createCustomer"})); len(g["data"].([]any)) != 1 {
		t.Errorf("listRequests (the queued calls are not recorded yet) %v", g)
	}
	// The same errors and scoping as through a worker.
	for _, c := range []struct {
		key, method string
		params      m
		status      int
		code, field string
	}{
		{s.Key, "getOrder", m{"id": "NOPE"}, 404, "order_not_found", "params.id"},
		{keyB, "getOrder", m{"id": "O1"}, 404, "order_not_found", "params.id"},
		{keyB, "getCustomer", m{"id": "C1"}, 404, "customer_not_found", "params.id"},
		{keyB, "getRequest", m{"id": "req-c1"}, 404, "request_not_found", "params.id"},
		{s.Key, "listOrders", m{"customer": "NOPE"}, 404, "customer_not_found", "params.customer"},
		{s.Key, "getOrder", m{"id": "a b"}, 400, "invalid_params", "params.id"},
	} {
		r := s.DoOnce(c.key, envelope(c.method, c.params))
		e, _ := r.JSON(t)["error"].(m)
		if r.Status != c.status || e["code"] != c.code || e["field"] != c.field || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %v: %d %s, want %d %s naming %s", c.method, c.params, r.Status, r.Body, c.status, c.code, c.field)
		}
	}
	if g := s.JSON(t, s.DoOnce(keyB, envelope("listOrders", m{}))); len(g["data"].([]any)) != 0 {
		t.Errorf("partner B lists A's orders: %v", g)
	}
	if n := commandsQueued(t, s); n != queued {
		t.Fatalf("the reads changed the queue: %d commands, want %d", n, queued)
	}

	// A worker again: the queue drains and the lists show what it made.
	s.StartWorker()
	deadline := time.Now().Add(30 * time.Second)
	for s.Count(`SELECT count(*) FROM tenants WHERE kind = 'customer'`) != queued+1 {
		if time.Now().After(deadline) {
			t.Fatal("the queued commands did not run")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := s.walk(s.Key, "listCustomers", nil, 15, "remoteId", nil); len(got) != queued+1 || got[0] != "C1" {
		t.Errorf("customers after the queue drained: %v", got)
	}
}

// JSON decodes a 200 answer.
func (s *Stack) JSON(t *testing.T, r Response) m {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	return r.JSON(t)
}

// TestListWalkUnderConcurrentWrites walks listOrders while other calls
// create orders and change existing ones: no order is given twice, and every
// order that existed unchanged for the whole walk is given.
func TestListWalkUnderConcurrentWrites(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	s.StartWorker()
	s.Want(200, "createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}})
	const existing = 90
	inParallel(t, existing, 6, func(i int) error {
		_, err := s.callAs(s.Key, 200, "createFirstOrder", m{"customer": "C1", "id": fmt.Sprintf("E%03d", i),
			"product": "oo-lite", "licenses": 1, "duration": "monthly"})
		return err
	})

	// A writer creates orders and suspends, resumes and updates existing
	// ones until the walk ends.
	stop := make(chan struct{})
	var changed sync.Map
	writerDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			if _, err := s.callAs(s.Key, 200, "createFirstOrder", m{"customer": "C1", "id": fmt.Sprintf("N%03d", i),
				"product": "oo-lite", "licenses": 1, "duration": "monthly"}); err != nil {
				writerDone <- err
				return
			}
			id := fmt.Sprintf("E%03d", i*7%existing)
			changed.Store(id, true)
			method := []string{"suspendOrder", "resumeOrder"}[i%2]
			if _, err := s.callAs(s.Key, 200, method, m{"id": id}); err != nil {
				writerDone <- err
				return
			}
		}
	}()
	pages := 0
	got := s.walk(s.Key, "listOrders", nil, 4, "id", func() {
		pages++
		time.Sleep(20 * time.Millisecond) // let the writer change things between pages
	})
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, id := range got {
		if seen[id]++; seen[id] == 2 {
			t.Errorf("%s given twice", id)
		}
	}
	for i := range existing {
		id := fmt.Sprintf("E%03d", i)
		if _, ch := changed.Load(id); seen[id] == 0 && !ch {
			t.Errorf("%s existed unchanged for the whole walk and was not given", id)
		}
	}
	if n := s.Count(`SELECT count(*) FROM orders WHERE remote_id LIKE 'N%'`); n == 0 || pages < existing/4 {
		t.Fatalf("%d orders created during a walk of %d pages: nothing was written beside it", n, pages)
	}
}

// TestListCursorsAndLimits: a cursor is bound to its partner and filters;
// limits outside 1-100 are refused naming params.limit; the default is 50.
func TestListCursorsAndLimits(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	keyB := s.NewKey("Partner B")
	for _, key := range []string{s.Key, keyB} {
		if _, err := s.callAs(key, 200, "createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}); err != nil {
			t.Fatal(err)
		}
	}
	inParallel(t, 120, 6, func(i int) error {
		_, err := s.callAs(s.Key, 200, "createUser", m{"email": fmt.Sprintf("u%03d@example.com", i)})
		return err
	})
	page := s.JSON(t, s.CallOnce("listUsers", m{}))
	if n := len(page["data"].([]any)); n != 50 || page["nextCursor"] == nil {
		t.Fatalf("default page: %d users, next %v", n, page["nextCursor"])
	}
	if n := len(s.JSON(t, s.CallOnce("listUsers", m{"limit": 100}))["data"].([]any)); n != 100 {
		t.Errorf("limit 100: %d users", n)
	}
	if got := s.walk(s.Key, "listUsers", nil, 100, "email", nil); len(got) != 120 {
		t.Errorf("walk of 120 users by 100: %d", len(got))
	}
	for _, limit := range []any{0, 101, -1, "10", 2.5} {
		r := s.CallOnce("listUsers", m{"limit": limit})
		e, _ := r.JSON(t)["error"].(m)
		if r.Status != 400 || e["code"] != "invalid_params" || e["field"] != "params.limit" ||
			!strings.Contains(fmt.Sprint(e["message"]), "params.limit must be an integer from 1 to 100") {
			t.Errorf("limit %v: %d %s", limit, r.Status, r.Body)
		}
	}

	cursor := s.JSON(t, s.CallOnce("listOrders", m{"customer": "C1", "limit": 1}))["nextCursor"]
	if cursor != nil {
		t.Fatalf("a customer without orders has a next page: %v", cursor)
	}
	cursor = page["nextCursor"]
	for name, c := range map[string]struct {
		key    string
		method string
		params m
	}{
		"another partner's cursor": {keyB, "listUsers", m{"cursor": cursor}},
		"another list's cursor":    {s.Key, "listCustomers", m{"cursor": cursor}},
		"a filter added":           {s.Key, "listRequests", m{"cursor": cursor, "method": "createUser"}},
		"an altered cursor":        {s.Key, "listUsers", m{"cursor": "x" + cursor.(string)[1:]}},
	} {
		r := s.DoOnce(c.key, envelope(c.method, c.params))
		e, _ := r.JSON(t)["error"].(m)
		if r.Status != 400 || e["code"] != "invalid_params" || e["field"] != "params.cursor" {
			t.Errorf("%s: %d %s, want 400 naming params.cursor", name, r.Status, r.Body)
		}
	}
	// A filter changed between the pages of one list.
	reqs := s.JSON(t, s.CallOnce("listRequests", m{"method": "createUser", "limit": 1}))
	r := s.CallOnce("listRequests", m{"method": "createCustomer", "limit": 1, "cursor": reqs["nextCursor"]})
	if e, _ := r.JSON(t)["error"].(m); r.Status != 400 || e["field"] != "params.cursor" {
		t.Errorf("changed filter: %d %s", r.Status, r.Body)
	}
	if r := s.CallOnce("listRequests", m{"method": "createUser", "limit": 5, "cursor": reqs["nextCursor"]}); r.Status != 200 {
		t.Errorf("same filter, another limit: %d %s", r.Status, r.Body)
	}
}

// TestGetOrdersOfAHundredIds: 100 ids, some the partner's orders or
// renewals, some unknown or another partner's, answered in the order asked.
func TestGetOrdersOfAHundredIds(t *testing.T) {
	t.Parallel()
	s := NewStack(t, "RENEWAL_WINDOW_DAYS=400")
	s.StartGateway()
	s.StartWorker()
	keyB := s.NewKey("Partner B")
	for _, key := range []string{s.Key, keyB} {
		if _, err := s.callAs(key, 200, "createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}); err != nil {
			t.Fatal(err)
		}
	}
	var ids, wantData, wantMissing []string
	inParallel(t, 99, 6, func(i int) error {
		key := s.Key
		if i%5 == 0 {
			key = keyB // another partner's: missing for A
		}
		_, err := s.callAs(key, 200, "createFirstOrder", m{"customer": "C1", "id": fmt.Sprintf("O%03d", i),
			"product": "oo-lite", "licenses": 1, "duration": "yearly"})
		return err
	})
	s.Want(200, "createRenewalOrder", m{"parent": "O001", "id": "R1"})
	ids = append(ids, "R1") // a renewal: its first order, O001, in its place
	wantData = append(wantData, "O001")
	for i := range 99 {
		id := fmt.Sprintf("O%03d", i)
		ids = append(ids, id)
		switch {
		case i%5 == 0:
			wantMissing = append(wantMissing, id)
		case i != 1: // O001 was given for R1
			wantData = append(wantData, id)
		}
	}
	g := s.JSON(t, s.CallOnce("getOrders", m{"ids": ids}))
	var data, missing []string
	for _, o := range g["data"].([]any) {
		data = append(data, o.(m)["id"].(string))
	}
	for _, id := range g["missing"].([]any) {
		missing = append(missing, id.(string))
	}
	if strings.Join(data, ",") != strings.Join(wantData, ",") || strings.Join(missing, ",") != strings.Join(wantMissing, ",") {
		t.Errorf("getOrders of 100 ids:\ndata %v\nwant %v\nmissing %v\nwant %v", data, wantData, missing, wantMissing)
	}
	if o := g["data"].([]any)[0].(m); len(o["renewals"].([]any)) != 1 || o["status"] != "active" {
		t.Errorf("O001 %v", o)
	}
	r := s.CallOnce("getOrders", m{"ids": append(ids, "O999")})
	if e, _ := r.JSON(t)["error"].(m); r.Status != 400 || e["field"] != "params.ids" {
		t.Errorf("101 ids: %d %s", r.Status, r.Body)
	}
}

// TestReadsGoToReadDatabaseURL: with READ_DATABASE_URL set, the gateway
// answers reads from that database (here a second one standing for a
// replica, with rows of its own) and commands still write to DATABASE_URL.
func TestReadsGoToReadDatabaseURL(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	replica := testenv.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if _, err := testenv.Run(ctx, bins.Gateway(), append(slices.Clone(s.env), "DATABASE_URL="+replica), "migrate"); err != nil {
		t.Fatal(err)
	}
	var partner int64
	if err := s.DB().QueryRow(ctx, `SELECT id FROM partners WHERE name = 'Partner A'`).Scan(&partner); err != nil {
		t.Fatal(err)
	}
	rdb, err := pgxpool.New(ctx, replica)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	for _, q := range []string{
		`INSERT INTO partners (id, name) VALUES ($1, 'Partner A')`,
		`INSERT INTO tenants (partner_id, kind, remote_id, name, admin_email, storage_path, request_fp, customer_number)
			VALUES ($1, 'customer', 'R1', 'On the replica', 'r@example.com', 'local:r', 'fp', 1)`,
	} {
		if _, err := rdb.Exec(ctx, q, partner); err != nil {
			t.Fatal(err)
		}
	}
	s.StartGateway("READ_DATABASE_URL=" + replica)
	s.StartWorker()

	if g := s.Want(200, "getCustomer", m{"id": "R1"}); g["name"] != "On the replica" {
		t.Fatalf("getCustomer R1 %v", g)
	}
	s.Want(200, "createCustomer", m{"id": "P1", "name": "P1", "admin": m{"email": "p@example.com"}})
	if n := s.Count(`SELECT count(*) FROM tenants WHERE remote_id = 'P1'`); n != 1 {
		t.Fatalf("P1 in the primary: %d rows", n)
	}
	if r := s.Call("getCustomer", m{"id": "P1"}); r.Status != 404 || r.ErrorCode(t) != "customer_not_found" {
		t.Errorf("getCustomer P1, on the primary only: %d %s", r.Status, r.Body)
	}
	l := s.Want(200, "listCustomers", m{})
	if d := l["data"].([]any); len(d) != 1 || d[0].(m)["remoteId"] != "R1" {
		t.Errorf("listCustomers %v", l)
	}
}
