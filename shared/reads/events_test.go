package reads

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// event adds a webhook event of partner that occurred at, with attempts of
// the given statuses (0: no answer), one second apart; it returns its id.
func (f *fixture) event(partner int64, request, typ string, at time.Time, statuses ...int) string {
	f.t.Helper()
	var pk int64
	var id string
	err := f.db.QueryRow(context.Background(), `INSERT INTO webhook_events (partner_id, request_id, event_type, body,
		occurred_at, status) VALUES ($1, $2, $3, '{"type":"'||$3||'"}', $4, 'delivered') RETURNING id, 'msg_'||event_id`,
		partner, request, typ, at).Scan(&pk, &id)
	if err != nil {
		f.t.Fatal(err)
	}
	for i, st := range statuses {
		var status, reason any
		if st != 0 {
			status = st
		} else {
			reason = "connection refused"
		}
		f.exec(`INSERT INTO webhook_attempts (event_pk, at, status, duration_ms, error) VALUES ($1, $2, $3, $4, $5)`,
			pk, at.Add(time.Duration(i)*time.Second), status, 10+i, reason)
	}
	return id
}

// listEvents: the partner's events of the last 30 days on the reader's
// clock, in the order they occurred, each with its attempts in order;
// filters by type, since and request id; pages by a cursor bound to them.
func TestListEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	day := 24 * time.Hour
	old := f.event(f.a, "r-old", "command.succeeded", f.now.Add(-31*day), 200)
	e1 := f.event(f.a, "r-1", "command.succeeded", f.now.Add(-29*day), 500, 0, 200)
	e2 := f.event(f.a, "r-2", "command.failed", f.now.Add(-2*day))
	e3 := f.event(f.a, "r-3", "command.succeeded", f.now.Add(-time.Hour), 200)
	f.event(f.b, "r-1", "command.succeeded", f.now.Add(-time.Hour), 200)

	ids := func(page map[string]any) []string {
		var out []string
		for _, e := range page["data"].([]any) {
			out = append(out, e.(map[string]any)["id"].(string))
		}
		return out
	}
	page, perr := f.call(f.a, "listEvents", `{}`)
	if perr != nil || fmt.Sprint(ids(page)) != fmt.Sprint([]string{e1, e2, e3}) || page["nextCursor"] != nil {
		t.Fatalf("listEvents: %v %v, want %v (not %s, 31 days old)", page, perr, []string{e1, e2, e3}, old)
	}
	first := page["data"].([]any)[0].(map[string]any)
	at := f.now.Add(-29 * day).Unix()
	var got []string
	for _, a := range first["attempts"].([]any) {
		a := a.(map[string]any)
		got = append(got, fmt.Sprintf("%d %v %v %v", int64(a["at"].(float64))-at, a["status"], a["durationMs"], a["error"]))
	}
	if want := []string{"0 500 10 <nil>", "1 <nil> 11 connection refused", "2 200 12 <nil>"}; fmt.Sprint(got) != fmt.Sprint(want) ||
		first["requestId"] != "r-1" || first["status"] != "delivered" || first["payload"].(map[string]any)["type"] != "command.succeeded" {
		t.Fatalf("the first event: attempts %q, want %q; %v", got, want, first)
	}
	if a := page["data"].([]any)[1].(map[string]any)["attempts"].([]any); len(a) != 0 {
		t.Fatalf("an event with no attempt: %v", a)
	}
	// The clock moves: a day later e1 is 30 days old and gone.
	f.now = f.now.Add(1*day + time.Second)
	if page, _ := f.call(f.a, "listEvents", `{}`); fmt.Sprint(ids(page)) != fmt.Sprint([]string{e2, e3}) {
		t.Fatalf("a day later: %v", ids(page))
	}
	f.now = f.now.Add(-1*day - time.Second)

	for params, want := range map[string][]string{
		`{"type":"command.failed"}`:                           {e2},
		`{"requestId":"r-3"}`:                                 {e3},
		fmt.Sprintf(`{"since":%d}`, f.now.Add(-3*day).Unix()): {e2, e3},
		`{"requestId":"r-old"}`:                               nil,
	} {
		if page, perr := f.call(f.a, "listEvents", params); perr != nil || fmt.Sprint(ids(page)) != fmt.Sprint(want) {
			t.Errorf("listEvents %s: %v %v, want %v", params, ids(page), perr, want)
		}
	}
	if page, _ := f.call(f.b, "listEvents", `{"requestId":"r-1"}`); len(ids(page)) != 1 || ids(page)[0] == e1 {
		t.Fatalf("partner B: %v", page)
	}
	// Pages of one, each once, in order; the cursor is bound to partner and filters.
	var walked []string
	params := `{"limit":1}`
	for range 5 {
		page, perr := f.call(f.a, "listEvents", params)
		if perr != nil {
			t.Fatal(perr)
		}
		walked = append(walked, ids(page)...)
		if page["nextCursor"] == nil {
			break
		}
		params = fmt.Sprintf(`{"limit":1,"cursor":%q}`, page["nextCursor"])
	}
	if fmt.Sprint(walked) != fmt.Sprint([]string{e1, e2, e3}) {
		t.Fatalf("walked %v", walked)
	}
	page, _ = f.call(f.a, "listEvents", `{"limit":1}`)
	cursor := page["nextCursor"].(string)
	if _, perr := f.call(f.b, "listEvents", fmt.Sprintf(`{"limit":1,"cursor":%q}`, cursor)); perr == nil || perr.Field != "params.cursor" {
		t.Fatalf("A's cursor given by B: %v", perr)
	}
	if _, perr := f.call(f.a, "listEvents", fmt.Sprintf(`{"limit":1,"type":"command.failed","cursor":%q}`, cursor)); perr == nil || perr.Field != "params.cursor" {
		t.Fatalf("a cursor with another filter: %v", perr)
	}
}
