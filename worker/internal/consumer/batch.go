package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// A batch delivery (protocol.BatchType) carries several commands in one
// message. Each member runs on its own, side by side, exactly as it would
// from a message of its own: decoded and checked, run in its own
// transaction, its key stored, its reply to its own correlation id. When
// every member is settled their replies go in one message, and the batch is
// acked. A member that would be dead-lettered, or requeued at shutdown, is
// not settled with the batch: it is given back alone (published again as the message of its own the
// gateway would have sent, confirmed) and is dead-lettered or run from that
// copy, so that the dead-letter queue only ever holds single commands and a
// poisoned member holds back nobody. A member that cannot be given back
// (the channel fails) requeues the whole batch: every member already
// answered is answered again from the ledger, provisioning nothing twice.

// requeueSplit is the requeue reason of a member given back alone.
const requeueSplit = "split"

// giveBackTimeout bounds the publish and confirm of a member given back.
const giveBackTimeout = 5 * time.Second

// sink is what apply tells how a delivery is settled: the channel's settler
// for a delivery, the batch for one of its members.
type sink interface {
	ack(tag uint64) int
	reject(d *amqp.Delivery, requeue bool) error
}

// handleBatch runs the members of batch delivery d and settles it. A batch
// that does not decode, or arrives while the worker stops, goes the way of
// any delivery: dead-lettered, or given back whole.
func (c *Consumer) handleBatch(ctx context.Context, d *amqp.Delivery, out *outbox, stopping bool) {
	members, err := protocol.DecodeBatch(d)
	if err != nil || stopping {
		c.handle(ctx, d, out, stopping)
		return
	}
	b := &batch{parent: out.settle.(*settler), d: d, giveBack: out.giveBack}
	mout := &outbox{replies: out.replies, settle: b, giveBack: out.giveBack, slots: out.slots, batch: b}
	var wg sync.WaitGroup
	wg.Add(len(members))
	for i := range members {
		out.members <- func() {
			defer wg.Done()
			c.handle(ctx, &members[i], mout, false)
		}
	}
	wg.Wait()
	if err := b.sendReplies(ctx, out.replies); err != nil {
		c.log.WarnContext(ctx, "replying to a batch failed; its callers are answered 202", "error", err)
	}
	b.settle(ctx, c)
}

// batch settles a batch delivery for its members.
type batch struct {
	parent   *settler
	d        *amqp.Delivery
	giveBack func(amqp.Publishing) error

	mu      sync.Mutex
	requeue bool // a member could not be given back: the batch goes back whole
	replies []protocol.Reply
}

// addReply keeps a member's reply, to be sent with the others'.
func (b *batch) addReply(correlationID string, res protocol.Result) {
	b.mu.Lock()
	b.replies = append(b.replies, protocol.Reply{CorrelationID: correlationID, Result: res})
	b.mu.Unlock()
}

// sendReplies sends the members' replies in one message (the gateway that
// sent the batch waits for them all on one reply address), once every
// member's key is stored.
func (b *batch) sendReplies(ctx context.Context, ch *amqp.Channel) error {
	switch {
	case b.d.ReplyTo == "" || len(b.replies) == 0:
		return nil
	case len(b.replies) == 1:
		r := b.replies[0]
		return ch.PublishWithContext(ctx, "", b.d.ReplyTo, false, false, r.ReplyPublishing(r.CorrelationID))
	}
	return ch.PublishWithContext(ctx, "", b.d.ReplyTo, false, false, protocol.EncodeReplies(b.replies))
}

// ack holds a member's ack until the batch is settled.
func (b *batch) ack(uint64) int { return 0 }

// reject gives member md back alone (process never dead-letters a member,
// so this is the copy that will be).
func (b *batch) reject(md *amqp.Delivery, _ bool) error {
	err := b.giveBack(protocol.MemberPublishing(md))
	if err != nil {
		b.mu.Lock()
		b.requeue = true
		b.mu.Unlock()
	}
	return err
}

// settle acks the batch, or requeues it whole when a member could not be
// given back.
func (b *batch) settle(ctx context.Context, c *Consumer) {
	if !b.requeue {
		b.parent.ack(b.d.DeliveryTag)
		return
	}
	if err := b.parent.reject(b.d, true); err != nil {
		c.log.WarnContext(ctx, "requeueing a batch failed; the broker will redeliver it", "error", err)
	}
}

// giver publishes members given back alone on a channel in confirm mode of
// its own, opened at the first.
type giver struct {
	conn *amqp.Connection

	mu sync.Mutex
	ch *amqp.Channel
}

func (g *giver) channel() (*amqp.Channel, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch != nil && !g.ch.IsClosed() {
		return g.ch, nil
	}
	ch, err := g.conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, err
	}
	g.ch = ch
	return ch, nil
}

// publish puts pub on the command queue and waits for the broker's confirm.
func (g *giver) publish(pub amqp.Publishing) error {
	ch, err := g.channel()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), giveBackTimeout)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, amqpx.Exchange, amqpx.RoutingKey, false, false, pub)
	if err != nil {
		return err
	}
	acked, err := dc.WaitContext(ctx)
	switch {
	case err != nil:
		return err
	case !acked:
		return errors.New("the broker nacked the member given back")
	}
	return nil
}

func (g *giver) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch != nil {
		g.ch.Close()
	}
}
