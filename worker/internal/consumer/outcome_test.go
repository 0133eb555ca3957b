package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// States of an idempotency record after a delivery.
const (
	recordNone     = "none"     // the command carried no key
	recordReplay   = "replay"   // completed: a retry gets the reply stored
	recordReleased = "released" // freed: a retry runs again
	recordHeld     = "held"     // exactly as the gateway left it
)

// Log messages of a delivery's one line.
const (
	msgAnswered     = "command"
	msgDeadLettered = "command dead-lettered"
	msgRequeued     = "command requeued at shutdown"
)

const firstOrderO1 = `{"customer":"C1","id":"O1","product":"oo-std","licenses":5,"duration":"monthly"}`

// outcomePath is one way a delivery ends, and what the world looks like after.
type outcomePath struct {
	name string
	rig  rig                                 // zero: the default harness
	cmd  func(t *testing.T) protocol.Command // the command under test
	hold bool                                // the gateway holds its key before it publishes
	// forge changes the message the gateway would have sent.
	forge func(p *amqp.Publishing)
	// before runs before the command is published; await waits for its
	// outcome and stops the worker (default: one command counted, then stop).
	before, await func(t *testing.T, hs *harness, cmd protocol.Command)
	check         func(t *testing.T, hs *harness, cmd protocol.Command) // further effects

	queue, dead int                // messages left in the command queue and the dead-letter queue
	deadReason  string             // the dead_lettered_total reason, when dead is 1
	reply       int                // status of the reply, 0 for none
	record      string             // the command's idempotency record afterwards
	counted     map[string]float64 // every nonzero series of commands_total, "method/outcome"
	logMsg      string             // the command's one log line
	unread      bool               // the message is refused before its request id is read
	logReason   string             // its reason attribute
}

// Every way a delivery ends, on the real broker and Redis: the queue the
// message is left in, the reply, the idempotency record, commands_total
// counted once with its outcome, and one log line.
func everyOutcomeIsCarriedOutOnce(t *testing.T, env rig) {
	for _, p := range []outcomePath{
		{
			name: "answered: result stored, replied, acked",
			cmd:  func(t *testing.T) protocol.Command { return keyed(t, 1, protocol.CreateCustomer, customerABC, "") },
			hold: true, reply: 200, record: recordReplay,
			counted: map[string]float64{"createCustomer/ok": 1}, logMsg: msgAnswered,
		},
		{
			name:  "read: no key, replied, acked",
			cmd:   func(*testing.T) protocol.Command { return command(protocol.GetCustomer, "read-1") },
			reply: 200, record: recordNone,
			counted: map[string]float64{"getCustomer/ok": 1}, logMsg: msgAnswered,
		},
		{
			name: "refused under a derived key: key released, replied, acked",
			cmd: func(t *testing.T) protocol.Command {
				return keyed(t, 1, protocol.CreateFirstOrder, firstOrderO1, "")
			},
			hold: true, reply: 404, record: recordReleased,
			counted: map[string]float64{"createFirstOrder/rejected": 1}, logMsg: msgAnswered,
		},
		{
			name: "refused under a header key: refusal stored, replied, acked",
			cmd: func(t *testing.T) protocol.Command {
				return keyed(t, 1, protocol.CreateFirstOrder, firstOrderO1, "k-1")
			},
			hold: true, reply: 404, record: recordReplay,
			counted: map[string]float64{"createFirstOrder/rejected": 1}, logMsg: msgAnswered,
		},
		{
			name: "answered, ending another record: that record deleted",
			cmd: func(t *testing.T) protocol.Command {
				return keyed(t, 1, protocol.DeleteUser, `{"email":"ann@example.com"}`, "del-1")
			},
			before: func(t *testing.T, hs *harness, _ protocol.Command) {
				ctx := context.Background()
				if _, _, err := hs.idem.Acquire(ctx, endedKey, "t", "fp"); err != nil {
					t.Fatal(err)
				}
				if err := hs.idem.Complete(ctx, endedKey, "t", "fp", idempotency.Result{Status: 200}); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, hs *harness, _ protocol.Command) {
				if err := hs.rdb.Get(context.Background(), endedKey).Err(); !errors.Is(err, redis.Nil) {
					t.Errorf("the ended record is still there (%v)", err)
				}
			},
			hold: true, reply: 200, record: recordReplay,
			counted: map[string]float64{"deleteUser/ok": 1}, logMsg: msgAnswered,
		},
		{
			name: "transient failures retried in place, then answered",
			cmd: func(t *testing.T) protocol.Command {
				return keyed(t, 1, protocol.CancelOrder, `{"id":"O1"}`, "c-1")
			},
			check: func(t *testing.T, hs *harness, cmd protocol.Command) {
				if n := hs.h.ran(cmd.RequestID); n != 4 {
					t.Errorf("handler ran %d times, want 4 (3 failures, then success)", n)
				}
				if got := testutil.ToFloat64(hs.m.redeliveries); got != 0 {
					t.Errorf("redeliveries %v: retries must not go back to the broker", got)
				}
			},
			hold: true, reply: 200, record: recordReplay,
			counted: map[string]float64{"cancelOrder/ok": 1}, logMsg: msgAnswered,
		},
		{
			name: "undecodable: dead-lettered unanswered, not counted under a method",
			cmd:  func(*testing.T) protocol.Command { return command("dropTables", "drop-1") },
			await: func(t *testing.T, hs *harness, _ protocol.Command) {
				undecodable := hs.m.deadLettered.WithLabelValues("decode")
				eventually(t, "the message dead-lettered", func() bool { return testutil.ToFloat64(undecodable) == 1 })
				hs.stop()
			},
			dead: 1, deadReason: "decode", record: recordNone, unread: true,
			counted: map[string]float64{}, logMsg: msgDeadLettered, logReason: "decode",
		},
		{
			name: "forged params: dead-lettered unanswered, the record it names untouched",
			cmd:  func(t *testing.T) protocol.Command { return keyed(t, 1, protocol.CreateCustomer, customerABC, "") },
			forge: func(p *amqp.Publishing) {
				p.Body = []byte(`{"id":"ABC","name":"Forged","admin":{"email":"a@example.com"}}`)
			},
			check: func(t *testing.T, hs *harness, cmd protocol.Command) {
				if n := hs.h.ran(cmd.RequestID); n != 0 {
					t.Errorf("the forged command ran %d times", n)
				}
			},
			hold: true, dead: 1, deadReason: "invalid", record: recordHeld,
			counted: map[string]float64{"createCustomer/dead_lettered": 1}, logMsg: msgDeadLettered, logReason: "invalid",
		},
		{
			name: "panic: recorded failed, answered 500, dead-lettered",
			cmd:  func(*testing.T) protocol.Command { return command(protocol.ResetUser, "panics") },
			check: func(t *testing.T, hs *harness, cmd protocol.Command) {
				hs.wantFailed(t, cmd.RequestID)
			},
			dead: 1, deadReason: "panic", reply: 500, record: recordNone,
			counted: map[string]float64{"resetUser/dead_lettered": 1}, logMsg: msgDeadLettered, logReason: "panic",
		},
		{
			name: "permanent failure: recorded failed, key released, answered 500, dead-lettered",
			cmd: func(t *testing.T) protocol.Command {
				return keyed(t, 1, protocol.SuspendOrder, `{"id":"O1"}`, "s-1")
			},
			check: func(t *testing.T, hs *harness, cmd protocol.Command) {
				hs.wantFailed(t, cmd.RequestID)
			},
			hold: true, dead: 1, deadReason: "permanent", reply: 500, record: recordReleased,
			counted: map[string]float64{"suspendOrder/dead_lettered": 1}, logMsg: msgDeadLettered, logReason: "permanent",
		},
		{
			name: "invalid: its refusal answered, key released, dead-lettered",
			cmd: func(t *testing.T) protocol.Command {
				return keyed(t, 1, protocol.ResumeOrder, `{"id":"O1"}`, "r-1")
			},
			check: func(t *testing.T, hs *harness, _ protocol.Command) {
				hs.wantFailed(t)
			},
			hold: true, dead: 1, deadReason: "invalid", reply: 400, record: recordReleased,
			counted: map[string]float64{"resumeOrder/dead_lettered": 1}, logMsg: msgDeadLettered, logReason: "invalid",
		},
		{
			name: "cut off at the shutdown timeout: requeued unanswered, key held",
			rig:  rig{concurrency: 4, shutdown: 100 * time.Millisecond},
			cmd: func(t *testing.T) protocol.Command {
				return keyed(t, 1, protocol.UpdateOrder, `{"id":"O1","licenses":3}`, "u-1")
			},
			await: func(t *testing.T, hs *harness, cmd protocol.Command) {
				eventually(t, "the command to start", func() bool { return hs.h.ran(cmd.RequestID) == 1 })
				hs.stop() // the gate stays closed: the command runs until cancelled
			},
			hold: true, queue: 1, record: recordHeld,
			counted: map[string]float64{"updateOrder/requeued": 1}, logMsg: msgRequeued, logReason: requeueCancelled,
		},
		{
			name: "result not stored by the shutdown timeout: requeued unanswered, key held",
			rig:  rig{concurrency: 4, shutdown: 100 * time.Millisecond, brokenStore: true},
			cmd:  func(t *testing.T) protocol.Command { return keyed(t, 1, protocol.CreateCustomer, customerABC, "") },
			await: func(t *testing.T, hs *harness, _ protocol.Command) {
				redisRetries := hs.m.retries.WithLabelValues("redis")
				eventually(t, "storing the result to fail", func() bool { return testutil.ToFloat64(redisRetries) >= 1 })
				hs.stop()
			},
			hold: true, queue: 1, record: recordHeld,
			counted: map[string]float64{"createCustomer/requeued": 1}, logMsg: msgRequeued, logReason: requeueUnstored,
		},
		{
			name: "prefetched while stopping: requeued unrun, key held",
			rig:  rig{concurrency: 1, shutdown: 5 * time.Second},
			cmd:  func(t *testing.T) protocol.Command { return keyed(t, 1, protocol.CreateCustomer, customerABC, "") },
			before: func(t *testing.T, hs *harness, _ protocol.Command) {
				slow := command(protocol.UpdateOrder, "slow") // takes the only slot until the gate opens
				hs.publish(t, slow.Publishing("", ""))
				eventually(t, "the slow command to start", func() bool { return hs.h.ran("slow") == 1 })
			},
			await: func(t *testing.T, hs *harness, _ protocol.Command) {
				// Published with a confirm: out of the queue is in the worker's buffer.
				eventually(t, "the command prefetched", func() bool { return hs.depth(t, amqpx.Queue) == 0 })
				hs.cancel() // stopping: what arrives from now on is given back
				close(hs.h.gate)
				hs.stop()
			},
			check: func(t *testing.T, hs *harness, cmd protocol.Command) {
				if n := hs.h.ran(cmd.RequestID); n != 0 {
					t.Errorf("the prefetched command ran %d times", n)
				}
			},
			hold: true, queue: 1, record: recordHeld,
			counted: map[string]float64{"createCustomer/requeued": 1, "updateOrder/ok": 1}, logMsg: msgRequeued,
			logReason: requeuePrefetched,
		},
	} {
		t.Run(p.name, func(t *testing.T) { p.run(t, env) })
	}
}

// run runs the path on the vhost and Redis DB of env, emptied first.
func (p *outcomePath) run(t *testing.T, env rig) {
	r := p.rig
	if r.concurrency == 0 {
		r = rig{concurrency: 4, shutdown: 5 * time.Second}
	}
	r.amqpURL, r.redisURL = env.amqpURL, env.redisURL
	empty(t, r)
	hs := startRig(t, r)
	ctx := context.Background()
	cmd := p.cmd(t)
	var held string
	if p.hold {
		if out, _, err := hs.idem.Acquire(ctx, cmd.IdemKey, cmd.IdemToken, cmd.IdemFP); err != nil || out != idempotency.New {
			t.Fatalf("acquire %s: %v %v", cmd.IdemKey, out, err)
		}
		held = hs.rdb.Get(ctx, cmd.IdemKey).Val()
	}
	replies, err := hs.ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.before != nil {
		p.before(t, hs, cmd)
	}
	msg := cmd.Publishing("call-1", replies.Name)
	if p.forge != nil {
		p.forge(&msg)
	}
	hs.publish(t, msg)
	if p.await != nil {
		p.await(t, hs, cmd)
	} else {
		eventually(t, "the command counted", func() bool { return sum(hs.counted(t)) >= 1 })
		hs.stop()
	}

	if got := hs.counted(t); !maps.Equal(got, p.counted) {
		t.Errorf("commands_total %v, want %v", got, p.counted)
	}
	hs.wantQueues(t, p.queue, p.dead)
	if p.dead == 1 {
		if got := testutil.ToFloat64(hs.m.deadLettered.WithLabelValues(p.deadReason)); got != 1 {
			t.Errorf("dead_lettered_total{reason=%q} = %v, want 1", p.deadReason, got)
		}
	}
	hs.wantReply(t, replies.Name, p.reply, cmd.RequestID)
	hs.wantRecord(t, cmd, p.record, p.reply, held)
	logged := cmd.RequestID
	if p.unread {
		logged = ""
	}
	hs.wantLogLine(t, logged, p.logMsg, p.logReason, p.counted)
	if p.check != nil {
		p.check(t, hs, cmd)
	}
}

// empty deletes the queues and Redis records an earlier subtest left.
func empty(t *testing.T, r rig) {
	t.Helper()
	conn, err := amqp.Dial(r.amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{amqpx.Queue, amqpx.DeadQueue} {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			t.Fatal(err)
		}
	}
	opt, err := redis.ParseURL(r.redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

// counted reads every nonzero series of commands_total off the registry,
// keyed "method/outcome".
func (hs *harness) counted(t *testing.T) map[string]float64 {
	t.Helper()
	families, err := hs.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "oneoffice_worker_commands_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				got[labels["method"]+"/"+labels["outcome"]] = v
			}
		}
	}
	return got
}

func sum(m map[string]float64) float64 {
	var n float64
	for _, v := range m {
		n += v
	}
	return n
}

// wantQueues checks, once the stopped worker's consumer is gone (and with it
// whatever it left unsettled), the messages in the command queue and the
// dead-letter queue.
func (hs *harness) wantQueues(t *testing.T, queue, dead int) {
	t.Helper()
	eventually(t, "the consumer gone", func() bool {
		q, err := hs.ch.QueueDeclarePassive(amqpx.Queue, true, false, false, false, nil)
		return err == nil && q.Consumers == 0
	})
	if n := hs.depth(t, amqpx.Queue); n != queue {
		t.Errorf("%d messages in the command queue, want %d", n, queue)
	}
	if dead > 0 {
		eventually(t, "the dead-letter", func() bool { return hs.depth(t, amqpx.DeadQueue) >= dead })
	}
	if n := hs.depth(t, amqpx.DeadQueue); n != dead {
		t.Errorf("%d messages in the dead-letter queue, want %d", n, dead)
	}
}

// wantReply checks the replies the stopped worker sent: one of status (with
// the request id in a 500), or none when status is 0. A marker published
// after the worker stopped ends the replies.
func (hs *harness) wantReply(t *testing.T, queue string, status int, requestID string) {
	t.Helper()
	if err := hs.ch.Publish("", queue, false, false, amqp.Publishing{CorrelationId: "end"}); err != nil {
		t.Fatal(err)
	}
	var got []protocol.Result
	for {
		var d amqp.Delivery
		eventually(t, "the end of the replies", func() bool {
			var ok bool
			var err error
			d, ok, err = hs.ch.Get(queue, true)
			return err == nil && ok
		})
		if d.CorrelationId == "end" {
			break
		}
		if d.CorrelationId != "call-1" {
			t.Errorf("a reply with correlation id %q", d.CorrelationId)
		}
		res, err := protocol.DecodeReply(&d)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, res)
	}
	switch {
	case status == 0 && len(got) != 0:
		t.Errorf("replies %+v, want none", got)
	case status == 0:
	case len(got) != 1 || got[0].Status != status:
		t.Errorf("replies %+v, want one of status %d", got, status)
	case status == 500 && !strings.Contains(string(got[0].Body), requestID):
		t.Errorf("500 reply %s without the request id %s", got[0].Body, requestID)
	}
}

// wantRecord checks the command's idempotency record.
func (hs *harness) wantRecord(t *testing.T, cmd protocol.Command, state string, status int, held string) {
	t.Helper()
	ctx := context.Background()
	switch state {
	case recordNone:
		if cmd.IdemKey != "" {
			t.Fatalf("the command carries key %s", cmd.IdemKey)
		}
	case recordHeld:
		if got := hs.rdb.Get(ctx, cmd.IdemKey).Val(); got != held {
			t.Errorf("the record changed from %q to %q", held, got)
		}
	case recordReplay:
		out, res, err := hs.idem.Acquire(ctx, cmd.IdemKey, "retry", cmd.IdemFP)
		if err != nil || out != idempotency.Replay || res.Status != status {
			t.Errorf("a retry gets %v %d (%v), want the stored %d", out, res.Status, err, status)
		}
	case recordReleased:
		if out, _, err := hs.idem.Acquire(ctx, cmd.IdemKey, "retry", cmd.IdemFP); err != nil || out != idempotency.New {
			t.Errorf("a retry gets %v (%v), want to run again", out, err)
		}
	}
}

// wantLogLine checks that the command settled in one log line, with its
// message, reason, and the outcome counted.
func (hs *harness) wantLogLine(t *testing.T, requestID, msg, reason string, counted map[string]float64) {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(hs.log.String()) {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch l["msg"] {
		case msgAnswered, msgDeadLettered, msgRequeued:
			if l["request_id"] == requestID {
				lines = append(lines, l)
			}
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d log lines settle the command, want 1:\n%s", len(lines), hs.log.String())
	}
	l := lines[0]
	if l["msg"] != msg || l["reason"] != reason && reason != "" {
		t.Errorf("log line %v, want %q with reason %q", l, msg, reason)
	}
	method, outcome := l["method"].(string), l["outcome"].(string)
	if len(counted) > 0 && counted[method+"/"+outcome] != 1 || len(counted) == 0 && outcome != OutcomeDeadLettered {
		t.Errorf("log line of %s %s, want the outcome counted in %v", method, outcome, counted)
	}
	if msg == msgRequeued && l["level"] == "ERROR" {
		t.Errorf("a requeue logged as an error: %v", l)
	}
}

func (hs *harness) wantFailed(t *testing.T, requestIDs ...string) {
	t.Helper()
	hs.h.mu.Lock()
	defer hs.h.mu.Unlock()
	if !slices.Equal(hs.h.failed, requestIDs) {
		t.Errorf("recorded failed: %v, want %v", hs.h.failed, requestIDs)
	}
}

// ran is how many times the handler ran the command requestID.
func (h *faultyHandler) ran(requestID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[requestID]
}
