package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/oneoffice/provisioner/gateway/internal/auth"
)

// listEvents returns the data of one page of listEvents as A, failing on
// anything but 200.
func (s *Stack) events(key string, params m) ([]m, any) {
	s.t.Helper()
	r := s.Do(key, envelope("listEvents", params))
	if r.Status != http.StatusOK {
		s.t.Fatalf("listEvents %v: %d %s", params, r.Status, r.Body)
	}
	page := r.JSON(s.t)
	var out []m
	for _, e := range page["data"].([]any) {
		out = append(out, e.(m))
	}
	return out, page["nextCursor"]
}

func TestReplayEventSendsItAgainWithTheSameIDAsANewAttempt(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	s := webhookStack(t, r)
	keyB := s.NewKey("Partner B")
	s.Want(200, "createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}, "X-Request-Id", "req-c1")
	s.Want(200, "createFirstOrder", m{"customer": "C1", "id": "O1", "product": "oo-std", "licenses": 5, "duration": "monthly"},
		"X-Request-Id", "req-o1")
	if resp := s.Call("cancelOrder", m{"id": "NOPE"}, "X-Request-Id", "req-x"); resp.Status != 404 {
		t.Fatalf("cancelOrder NOPE: %d %s", resp.Status, resp.Body)
	}
	r.waitFor("three events", func(got []delivery) bool { return len(got) >= 3 })
	s.waitEventsDone(3)

	evs, _ := s.events(s.Key, m{"requestId": "req-c1"})
	if len(evs) != 1 {
		t.Fatalf("listEvents requestId req-c1: %v", evs)
	}
	ev := evs[0]
	id := ev["id"].(string)
	atts := ev["attempts"].([]any)
	if ev["status"] != "delivered" || ev["type"] != "command.succeeded" || ev["requestId"] != "req-c1" || len(atts) != 1 ||
		atts[0].(m)["status"] != float64(200) || atts[0].(m)["durationMs"].(float64) < 0 || ev["payload"].(m)["method"] != "createCustomer" {
		t.Fatalf("the event before the replay: %v", ev)
	}
	var first delivery
	for _, d := range r.deliveries() {
		if d.ID == id {
			first = d
		}
	}
	if first.ID == "" {
		t.Fatalf("listEvents id %s was never delivered: %s", id, summary(r.deliveries()))
	}

	// Another partner neither finds nor replays it.
	if resp := s.Do(keyB, envelope("replayEvent", m{"id": id})); resp.Status != 404 || resp.ErrorCode(t) != "event_not_found" {
		t.Fatalf("partner B replays A's event: %d %s", resp.Status, resp.Body)
	}
	if evsB, _ := s.events(keyB, m{}); len(evsB) != 0 {
		t.Fatalf("partner B lists %v", evsB)
	}

	before := time.Now().Unix()
	rp := s.Want(200, "replayEvent", m{"id": id})
	if rp["id"] != id || rp["replayed"] != true || rp["status"] != "pending" || rp["queuedAt"].(float64) < float64(before-1) {
		t.Fatalf("replayEvent: %v", rp)
	}
	got := r.waitFor("the replay", func(got []delivery) bool { return len(got) >= 4 })
	last := got[len(got)-1]
	if last.ID != id || string(last.Body) != string(first.Body) {
		t.Fatalf("the replay came as %s %s, want %s %s", last.ID, last.Body, first.ID, first.Body)
	}
	s.waitEventsDone(3)
	evs, _ = s.events(s.Key, m{"requestId": "req-c1"})
	atts = evs[0]["attempts"].([]any)
	if len(atts) != 2 || atts[1].(m)["status"] != float64(200) || atts[1].(m)["at"].(float64) < rp["queuedAt"].(float64) ||
		evs[0]["status"] != "delivered" {
		t.Fatalf("after the replay: %v", evs[0])
	}
	if n := s.Count(`SELECT count(*) FROM webhook_attempts`); n != 4 {
		t.Fatalf("%d attempt rows, want 4", n)
	}
	// The replay is a command: recorded in the ledger, and it makes no event
	// of its own.
	if n := s.Count(`SELECT count(*) FROM command_ledger WHERE method = 'replayEvent' AND response_status = 200`); n != 1 {
		t.Fatalf("%d replayEvent ledger rows, want 1", n)
	}
	if n := s.Count(`SELECT count(*) FROM webhook_events`); n != 3 {
		t.Fatalf("%d events after the replay, want 3", n)
	}
	// On the audit trail by the key's prefix, never the key.
	if n := s.Count(`SELECT count(*) FROM admin_audit WHERE action = 'replayEvent' AND target = $1
		AND actor = 'key:' || $2 AND length(actor) < length($3) + 4`, id, auth.Prefix(s.Key), s.Key); n != 1 {
		t.Fatalf("%d audit rows of the replay by key %s, want 1", n, auth.Prefix(s.Key))
	}
	// A repeat with the same Idempotency-Key is answered from the record
	// and sends nothing more.
	s.Want(200, "replayEvent", m{"id": id}, "Idempotency-Key", "replay-1")
	r.waitFor("the keyed replay", func(got []delivery) bool { return len(got) >= 5 })
	s.waitEventsDone(3)
	again := s.Want(200, "replayEvent", m{"id": id}, "Idempotency-Key", "replay-1")
	if again["id"] != id {
		t.Fatalf("repeat: %v", again)
	}
	if n := s.Count(`SELECT count(*) FROM webhook_events WHERE status = 'pending'`); n != 0 {
		t.Fatalf("the repeat made the event pending again")
	}
	if n := s.Count(`SELECT count(*) FROM webhook_attempts`); n != 5 {
		t.Fatalf("%d attempt rows after the keyed replay and its repeat, want 5", n)
	}
}

func TestListEventsPagesFiltersAndKeepsThirtyDays(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	s := webhookStack(t, r)
	for i, id := range []string{"C1", "C2", "C3", "C4"} {
		s.Want(200, "createCustomer", m{"id": id, "name": id, "admin": m{"email": "a@example.com"}}, "X-Request-Id", "req-"+id)
		_ = i
	}
	r.waitFor("four events", func(got []delivery) bool { return len(got) >= 4 })
	s.waitEventsDone(4)

	// Pages of 3 then 1, in the order the calls completed, each event once.
	var seen []string
	var cursor any
	for page := 0; ; page++ {
		p := m{"limit": 3, "type": "command.succeeded"}
		if cursor != nil {
			p["cursor"] = cursor
		}
		evs, next := s.events(s.Key, p)
		for _, e := range evs {
			seen = append(seen, e["requestId"].(string))
		}
		if next == nil {
			break
		}
		cursor = next
		if page > 3 {
			t.Fatal("more pages than events")
		}
	}
	if len(seen) != 4 || seen[0] != "req-C1" || seen[3] != "req-C4" {
		t.Fatalf("walked %v, want req-C1..req-C4", seen)
	}
	// The cursor is bound to the filters.
	if resp := s.Call("listEvents", m{"limit": 3, "cursor": cursor}); resp.Status != 400 || resp.ErrorCode(t) != "invalid_params" {
		t.Fatalf("cursor with other filters: %d %s", resp.Status, resp.Body)
	}
	if evs, _ := s.events(s.Key, m{"type": "command.failed"}); len(evs) != 0 {
		t.Fatalf("type command.failed: %v", evs)
	}
	if evs, _ := s.events(s.Key, m{"since": time.Now().Add(time.Hour).Unix()}); len(evs) != 0 {
		t.Fatalf("since an hour ahead: %v", evs)
	}
	if evs, _ := s.events(s.Key, m{"since": 0}); len(evs) != 4 {
		t.Fatalf("since 0: %v", evs)
	}
	if evs, _ := s.events(s.Key, m{"requestId": "req-C3"}); len(evs) != 1 || evs[0]["requestId"] != "req-C3" {
		t.Fatalf("requestId req-C3: %v", evs)
	}

	// An event that occurred 31 days ago is neither listed nor replayed;
	// one of 29 days ago is both.
	if _, err := s.DB().Exec(t.Context(), `UPDATE webhook_events SET occurred_at = now() - interval '31 days'
		WHERE request_id = 'req-C1'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec(t.Context(), `UPDATE webhook_events SET occurred_at = now() - interval '29 days'
		WHERE request_id = 'req-C2'`); err != nil {
		t.Fatal(err)
	}
	evs, _ := s.events(s.Key, m{"since": 0})
	if len(evs) != 3 || evs[0]["requestId"] != "req-C2" {
		t.Fatalf("after ageing: %v", evs)
	}
	var old string
	s.DB().QueryRow(t.Context(), `SELECT 'msg_' || event_id FROM webhook_events WHERE request_id = 'req-C1'`).Scan(&old)
	if resp := s.Call("replayEvent", m{"id": old}); resp.Status != 404 || resp.ErrorCode(t) != "event_not_found" {
		t.Fatalf("replay of a 31-day-old event: %d %s", resp.Status, resp.Body)
	}
	s.Want(200, "replayEvent", m{"id": evs[0]["id"]})
	r.waitFor("the replay of the 29-day-old event", func(got []delivery) bool { return len(got) >= 5 })
}
