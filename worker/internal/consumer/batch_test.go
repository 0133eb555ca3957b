package consumer

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
)

const msgGivenBack = "command of a batch given back to run alone"

// The members of one batch message settle on their own: each answered one
// gets its own reply, and each that fails is given back alone, so that it
// is dead-lettered as a message of its own with nothing recorded by its run
// in the batch, while the batch itself is acked.
func batchMembersSettleOnTheirOwn(t *testing.T, env rig) {
	hs := start(t, env)
	ctx := context.Background()
	replies, err := hs.ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := keyed(t, 1, protocol.CreateCustomer, customerABC, "")
	forged := keyed(t, 1, protocol.CreateFirstOrder, firstOrderO1, "f-1")
	panics := command(protocol.ResetUser, "panics")
	read := command(protocol.GetCustomer, "read-1")
	held := map[string]string{}
	for _, c := range []protocol.Command{good, forged} {
		if out, _, err := hs.idem.Acquire(ctx, c.IdemKey, c.IdemToken, c.IdemFP); err != nil || out != idempotency.New {
			t.Fatalf("acquire %s: %v %v", c.IdemKey, out, err)
		}
		held[c.IdemKey] = hs.rdb.Get(ctx, c.IdemKey).Val()
	}
	cmds := []protocol.Command{good, forged, panics, read}
	pubs := make([]amqp.Publishing, len(cmds))
	for i, c := range cmds {
		pubs[i] = c.Publishing("call-"+c.RequestID, replies.Name)
	}
	pubs[1].Body = []byte(`{"customer":"C9","id":"O1","product":"oo-std","licenses":5,"duration":"monthly"}`)
	batch, err := protocol.EncodeBatch(pubs)
	if err != nil {
		t.Fatal(err)
	}
	hs.publish(t, batch)

	want := map[string]float64{
		"createCustomer/ok": 1, "getCustomer/ok": 1,
		"createFirstOrder/requeued": 1, "createFirstOrder/dead_lettered": 1,
		"resetUser/requeued": 1, "resetUser/dead_lettered": 1,
	}
	eventually(t, "every member settled", func() bool { return sum(hs.counted(t)) >= sum(want) })
	hs.stop()
	if got := hs.counted(t); !maps.Equal(got, want) {
		t.Errorf("commands_total %v, want %v", got, want)
	}
	hs.wantQueues(t, 0, 2)
	var dead []string
	for range 2 {
		d, ok, err := hs.ch.Get(amqpx.DeadQueue, true)
		if err != nil || !ok {
			t.Fatalf("dead-letter: %v %v", ok, err)
		}
		cmd, err := protocol.DecodeCommand(&d)
		if err != nil {
			t.Fatalf("a dead-letter that is not a command of its own: %v", err)
		}
		dead = append(dead, cmd.RequestID+"@"+d.CorrelationId)
	}
	slices.Sort(dead)
	if want := []string{"panics@call-panics", "rid-createFirstOrder@call-rid-createFirstOrder"}; !slices.Equal(dead, want) {
		t.Errorf("dead-lettered %v, want %v", dead, want)
	}
	if got := hs.replies(t, replies.Name); !maps.Equal(got, map[string]int{
		"call-rid-createCustomer": 200, "call-read-1": 200, "call-panics": 500,
	}) {
		t.Errorf("replies %v", got)
	}
	if hs.replyMessages != 2 {
		t.Errorf("replies in %d messages, want 2: the batch's answered members together, the panic's alone", hs.replyMessages)
	}
	if n := hs.h.ran("panics"); n != 2 {
		t.Errorf("the panicking member ran %d times, want twice: in the batch, then alone", n)
	}
	hs.wantFailed(t, "panics") // recorded by the run alone only
	hs.wantRecord(t, good, recordReplay, 200, "")
	hs.wantRecord(t, forged, recordHeld, 0, held[forged.IdemKey])
	if n := strings.Count(hs.log.String(), msgGivenBack); n != 2 {
		t.Errorf("%d members logged as given back, want 2:\n%s", n, hs.log.String())
	}
}

// replies reads every reply in queue, alone or in batches: the status by
// correlation id. It counts the messages in hs.replyMessages.
func (hs *harness) replies(t *testing.T, queue string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for {
		d, ok, err := hs.ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return got
		}
		batch := []protocol.Reply{{CorrelationID: d.CorrelationId}}
		if d.Type == protocol.BatchType {
			batch, err = protocol.DecodeReplies(d.Body)
		} else {
			batch[0].Result, err = protocol.DecodeReply(&d)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range batch {
			if _, twice := got[r.CorrelationID]; twice {
				t.Errorf("two replies to %s", r.CorrelationID)
			}
			got[r.CorrelationID] = r.Status
		}
		hs.replyMessages++
	}
}
