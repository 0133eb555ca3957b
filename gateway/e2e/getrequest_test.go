package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// getRequest tells a partner what became of its own mutating calls, a
// refusal included, and nothing of another partner's or of reads.
func TestGetRequest(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	created := s.Call("createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}, "X-Request-Id", "req-create")
	if created.Status != 200 {
		t.Fatalf("createCustomer: %d %s", created.Status, created.Body)
	}
	g := s.Want(200, "getRequest", m{"id": "req-create"})
	resp, _ := g["response"].(m)
	body, _ := json.Marshal(resp["body"])
	var want map[string]any
	json.Unmarshal(created.Body, &want)
	delete(want, "livemode") // the gateway's, on the answer; the recorded result is the worker's
	wantBody, _ := json.Marshal(want)
	if g["requestId"] != "req-create" || g["method"] != "createCustomer" || g["status"] != "succeeded" ||
		resp["status"] != float64(200) || string(body) != string(wantBody) || g["createdAt"] == nil || g["completedAt"] == nil {
		t.Fatalf("getRequest of a createCustomer: %v, want succeeded with %s", g, created.Body)
	}

	// A refusal is an answer too: succeeded, with its status.
	if r := s.Call("suspendOrder", m{"id": "NOPE"}, "X-Request-Id", "req-refused"); r.Status != 404 {
		t.Fatalf("suspend of an unknown order: %d %s", r.Status, r.Body)
	}
	g = s.Want(200, "getRequest", m{"id": "req-refused"})
	if g["status"] != "succeeded" || g["response"].(m)["status"] != float64(404) {
		t.Fatalf("getRequest of a refused call: %v", g)
	}

	// Reads are not recorded; unknown ids and another partner's are 404.
	s.Want(200, "getCustomer", m{"id": "C1"}, "X-Request-Id", "req-read")
	keyB := s.NewKey("Partner B")
	for _, c := range []struct {
		key, id string
	}{{s.Key, "req-read"}, {s.Key, "req-unknown"}, {keyB, "req-create"}} {
		r := s.Do(c.key, envelope("getRequest", m{"id": c.id}))
		if r.Status != 404 || r.ErrorCode(t) != "request_not_found" {
			t.Errorf("getRequest %s: %d %s, want 404 request_not_found", c.id, r.Status, r.Body)
		}
	}
	if r := s.Call("getRequest", m{"id": ""}); r.Status != 400 || r.ErrorCode(t) != "invalid_params" {
		t.Errorf("getRequest of an empty id: %d %s", r.Status, r.Body)
	}
}

// A call answered 202 is told by getRequest as pending while it runs, then
// as succeeded with the answer the partner gets when it repeats the call.
// The order's row is held locked from the test, so the suspend waits in the
// worker past the gateway's deadline; getRequest, a read, runs beside it.
func TestGetRequestPendingThenSucceeded(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway("RPC_TIMEOUT=300ms")
	s.StartWorker("WORKER_CONCURRENCY=4")
	s.Want(200, "createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}})
	s.Want(200, "createFirstOrder", m{"customer": "C1", "id": "O1", "product": "oo-lite", "licenses": 5, "duration": "monthly"})

	ctx := context.Background()
	lock, err := s.DB().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, `SELECT 1 FROM orders WHERE remote_id = 'O1' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}

	const key = "suspend-O1-pending"
	first := s.CallOnce("suspendOrder", m{"id": "O1"}, "Idempotency-Key", key, "X-Request-Id", "req-slow")
	if first.Status != 202 || first.JSON(t)["requestId"] != "req-slow" {
		t.Fatalf("suspend behind a locked row: %d %s, want 202 pending with its request id", first.Status, first.Body)
	}
	g := s.Want(200, "getRequest", m{"id": "req-slow"})
	if g["status"] != "pending" || g["method"] != "suspendOrder" || g["requestId"] != "req-slow" ||
		g["createdAt"] == nil || g["response"] != nil || g["completedAt"] != nil {
		t.Fatalf("getRequest while the call runs: %v, want pending with no response yet", g)
	}
	if n := s.Count(`SELECT count(*) FROM command_ledger WHERE request_id = 'req-slow'`); n != 0 {
		t.Fatalf("%d ledger rows for a call still running", n)
	}

	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var done map[string]any
	deadline := time.Now().Add(settleWithin)
	for {
		done = s.Want(200, "getRequest", m{"id": "req-slow"})
		if done["status"] != "pending" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, _ := done["response"].(m)
	if done["status"] != "succeeded" || resp["status"] != float64(200) || done["completedAt"] == nil {
		t.Fatalf("getRequest once the lock is gone: %v, want succeeded 200", done)
	}
	if body, _ := resp["body"].(m); body["status"] != "suspended" {
		t.Fatalf("getRequest's response body: %v, want the suspended order", resp["body"])
	}
	// The call repeated gets that same answer, replayed; the order is
	// suspended once. getRequest reads the ledger, which commits just before
	// the worker records the answer under the key in Redis: a repeat in
	// between is told 409 in progress, and retries as a partner would.
	var again Response
	deadline = time.Now().Add(settleWithin)
	for {
		again = s.CallOnce("suspendOrder", m{"id": "O1"}, "Idempotency-Key", key, "X-Request-Id", "req-again")
		if again.Status != 409 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if again.Status != 200 || again.Header.Get("Idempotent-Replayed") != "true" || again.JSON(t)["status"] != "suspended" {
		t.Fatalf("the call repeated: %d %v %s, want 200 replayed", again.Status, again.Header, again.Body)
	}
	if n := s.Count(`SELECT count(*) FROM command_ledger WHERE method = 'suspendOrder'`); n != 1 {
		t.Fatalf("%d suspendOrder ledger rows, want 1", n)
	}
	if n := s.Count(`SELECT count(*) FROM orders WHERE remote_id = 'O1' AND status = 'suspended'`); n != 1 {
		t.Fatalf("order O1 not suspended in the database")
	}
}
