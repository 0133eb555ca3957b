package consumer

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// settleRig consumes n messages from a queue of its own on a real channel,
// for a settler to settle.
type settleRig struct {
	queue     string
	admin, ch *amqp.Channel
	settle    *settler
	got       []amqp.Delivery
}

// newSettleRig makes a queue of its own on the vhost of url, with n messages.
func newSettleRig(t *testing.T, url string, n int) *settleRig {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := &settleRig{queue: testenv.Name("settle")}
	if r.admin, err = conn.Channel(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.admin.QueueDeclare(r.queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := r.admin.Publish("", r.queue, false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if r.ch, err = conn.Channel(); err != nil {
		t.Fatal(err)
	}
	deliveries, err := r.ch.Consume(r.queue, "rig", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		select {
		case d := <-deliveries:
			r.got = append(r.got, d)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d of %d deliveries", len(r.got), n)
		}
	}
	r.settle = newSettler(r.ch, 8, 20*time.Millisecond, func(err error) { t.Errorf("ack: %v", err) })
	for range n {
		r.settle.start()
	}
	return r
}

// unsettledAfterClose closes the consuming channel and returns how many of
// its deliveries the broker put back: those never acked.
func (r *settleRig) unsettledAfterClose(t *testing.T) int {
	t.Helper()
	if err := r.ch.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the consumer gone", func() bool {
		q, err := r.admin.QueueDeclarePassive(r.queue, true, false, false, false, nil)
		return err == nil && q.Consumers == 0
	})
	q, err := r.admin.QueueDeclarePassive(r.queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

// The settler on a real channel: each case consumes from a queue of its own,
// on one vhost.
func TestSettler(t *testing.T) {
	url := testenv.Vhost(t)
	for _, c := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"AcksTheRunWhenTheLastCommandFinishes", func(t *testing.T) {
			r := newSettleRig(t, url, 3)
			r.settle.ack(r.got[0].DeliveryTag)
			r.settle.ack(r.got[1].DeliveryTag) // held: the third still runs
			r.settle.ack(r.got[2].DeliveryTag) // nothing runs: one ack for all three
			if n := r.unsettledAfterClose(t); n != 0 {
				t.Fatalf("%d deliveries back in the queue, want 0", n)
			}
		}},
		{"FlushAcksOnlyTheContiguousRun", func(t *testing.T) {
			r := newSettleRig(t, url, 4)
			r.settle.ack(r.got[1].DeliveryTag) // waits for tag 1
			r.settle.ack(r.got[0].DeliveryTag) // tags 1-2 settled, held while 3 and 4 run
			r.settle.ack(r.got[3].DeliveryTag) // not contiguous: tag 3 still runs
			r.settle.flush()
			if n := r.unsettledAfterClose(t); n != 2 {
				t.Fatalf("%d deliveries back in the queue, want 2 (tags 3 and 4)", n)
			}
		}},
		{"FlushesHeldAcksAfterItsDelay", func(t *testing.T) {
			r := newSettleRig(t, url, 3)
			r.settle.ack(r.got[1].DeliveryTag) // waits for tag 1
			r.settle.ack(r.got[0].DeliveryTag) // two held at once while the third runs
			// Nothing else happens: only the timer can send the held acks.
			eventually(t, "the held acks sent", func() bool {
				r.settle.mu.Lock()
				defer r.settle.mu.Unlock()
				return r.settle.held == 0
			})
			if n := r.unsettledAfterClose(t); n != 1 {
				t.Fatalf("%d deliveries back in the queue, want 1", n)
			}
		}},
		{"RejectsAtOnceAndAcksAroundThem", func(t *testing.T) {
			r := newSettleRig(t, url, 3)
			if err := r.settle.reject(&r.got[1], true); err != nil { // requeued now
				t.Fatal(err)
			}
			r.settle.ack(r.got[0].DeliveryTag)
			r.settle.ack(r.got[2].DeliveryTag) // last: acks 1 and 3, not the requeued 2
			if n := r.unsettledAfterClose(t); n != 1 {
				t.Fatalf("%d deliveries in the queue, want 1 (the requeued one)", n)
			}
		}},
		// The multiple ack must name a tag still outstanding: here the last tag of
		// the run was rejected, so the ack names the one before it.
		{"AckAfterARejectedLastTag", func(t *testing.T) {
			r := newSettleRig(t, url, 3)
			r.settle.ack(r.got[0].DeliveryTag)
			r.settle.ack(r.got[1].DeliveryTag)                        // held while the third runs
			if err := r.settle.reject(&r.got[2], false); err != nil { // dropped; nothing runs now
				t.Fatal(err)
			}
			if n := r.unsettledAfterClose(t); n != 0 {
				t.Fatalf("%d deliveries back in the queue, want 0", n)
			}
		}},
	} {
		t.Run(c.name, c.run)
	}
}
