package e2e

import (
	"encoding/json"
	"testing"
)

// getRequest tells a partner what became of its own mutating calls, a
// refusal included, and nothing of another partner's or of reads.
func TestGetRequest(t *testing.T) {
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
	var want any
	json.Unmarshal(created.Body, &want)
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
