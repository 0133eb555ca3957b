package provision

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// replayEvent makes the partner's event due now, with a new retry window
// unless it was still pending, wakes the dispatchers at commit, and makes
// no event of its own; another partner's event, one older than 30 days (on
// the service's clock) and a disabled endpoint are refused.
func TestReplayEventMakesTheEventDueNow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.db.Exec(ctx, `INSERT INTO webhook_endpoints (partner_id, url, secret_sealed)
		VALUES ($1, 'https://hooks.example.com/', '\x00')`, f.partner); err != nil {
		t.Fatal(err)
	}
	f.run(t, "cmd-1", protocol.CreateCustomer, m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}})
	var id string
	if err := f.db.QueryRow(ctx, `SELECT 'msg_' || event_id FROM webhook_events WHERE request_id = 'r-cmd-1'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	type row struct {
		status   string
		attempts int
		due      bool // next_attempt_at <= now()
		window   time.Time
	}
	read := func() row {
		var r row
		if err := f.db.QueryRow(ctx, `SELECT status, attempts, next_attempt_at <= now(), retry_from FROM webhook_events`).
			Scan(&r.status, &r.attempts, &r.due, &r.window); err != nil {
			t.Fatal(err)
		}
		return r
	}
	set := func(sql string) {
		if _, err := f.db.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	replay := func(cmd string) protocol.Result {
		return f.run(t, cmd, "replayEvent", m{"id": id})
	}

	// Delivered: pending again, due now, a new window, its count from 0;
	// the dispatchers are told at commit.
	set(`UPDATE webhook_events SET status = 'delivered', attempts = 3, next_attempt_at = now() + interval '1 day',
		retry_from = now() - interval '2 days', delivered_at = now()`)
	conn, err := pgx.Connect(ctx, f.db.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LISTEN webhook_events"); err != nil {
		t.Fatal(err)
	}
	res := replay("cmd-2")
	var body protocol.Replayed
	if err := json.Unmarshal(res.Body, &body); err != nil || res.Status != http.StatusOK || body.ID != id ||
		!body.Replayed || body.Status != "pending" || body.QueuedAt == 0 {
		t.Fatalf("replayEvent: %d %s", res.Status, res.Body)
	}
	if r := read(); r.status != "pending" || r.attempts != 0 || !r.due || time.Since(r.window) > time.Hour {
		t.Fatalf("after the replay of a delivered event: %+v", r)
	}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := conn.WaitForNotification(wait); err != nil {
		t.Fatalf("no notification of the replay: %v", err)
	}

	// Still pending: only brought forward; its window and count stay.
	set(`UPDATE webhook_events SET attempts = 2, next_attempt_at = now() + interval '1 hour', retry_from = '2020-01-01'`)
	replay("cmd-3")
	if r := read(); r.status != "pending" || r.attempts != 2 || !r.due || r.window.Year() != 2020 {
		t.Fatalf("after the replay of a pending event: %+v", r)
	}
	var events, replays int
	f.db.QueryRow(ctx, `SELECT (SELECT count(*) FROM webhook_events), (SELECT count(*) FROM command_ledger
		WHERE method = 'replayEvent' AND response_status = 200)`).Scan(&events, &replays)
	if events != 1 || replays != 2 {
		t.Fatalf("%d events and %d replayEvent ledger rows, want 1 and 2", events, replays)
	}

	refused := func(cmd string, partner int64, status int, code string) {
		t.Helper()
		raw, _ := json.Marshal(m{"id": id})
		res, err := f.svc.Handle(ctx, &protocol.Command{CommandID: cmd, Method: "replayEvent", Partner: partner,
			RequestID: "r-" + cmd, Params: raw, Timestamp: f.clock})
		var e struct{ Error protocol.Error }
		_ = json.Unmarshal(res.Body, &e)
		if err != nil || res.Status != status || e.Error.Code != code || e.Error.Field != "params.id" {
			t.Fatalf("%s: %d %s (%v), want %d %s naming params.id", cmd, res.Status, res.Body, err, status, code)
		}
	}
	refused("cmd-4", f.newPartner(t, "other"), http.StatusNotFound, protocol.CodeEventNotFound)
	set(`UPDATE webhook_endpoints SET enabled = false`)
	refused("cmd-5", f.partner, http.StatusConflict, protocol.CodeConflict)
	set(`UPDATE webhook_endpoints SET enabled = true`)
	// 30 days on the service's clock: 29 days on it is replayed, 31 not.
	start := f.clock
	if _, err := f.db.Exec(ctx, `UPDATE webhook_events SET occurred_at = $1`, start); err != nil {
		t.Fatal(err)
	}
	f.clock = start.Add(29 * 24 * time.Hour)
	if res := replay("cmd-6"); res.Status != http.StatusOK {
		t.Fatalf("29 days on: %d %s", res.Status, res.Body)
	}
	f.clock = start.Add(31 * 24 * time.Hour)
	refused("cmd-7", f.partner, http.StatusNotFound, protocol.CodeEventNotFound)
}
