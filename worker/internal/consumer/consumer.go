// Package consumer is the worker's consume loop: it takes commands from the
// quorum queue, runs them with bounded concurrency, stores the result in the
// idempotency record, replies, and acks only then. Transient failures are
// retried in place with backoff so they do not use up the delivery limit;
// undecodable, invalid or panicking commands are dead-lettered.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/tracing"
)

// Handler runs one command.
type Handler interface {
	Handle(ctx context.Context, cmd *protocol.Command) (protocol.Result, error)
}

// Config of the consume loop.
type Config struct {
	AMQPURL         string
	Concurrency     int           // commands run at once
	Prefetch        int           // unacked deliveries the broker sends ahead
	ShutdownTimeout time.Duration // how long in-flight commands may finish at stop
	OnConnected     func(bool)    // told when the broker connection comes and goes
}

// Consumer consumes commands until its context ends.
type Consumer struct {
	cfg       Config
	handler   Handler
	transient func(error) bool
	idem      *idempotency.Store
	log       *slog.Logger
	m         *Metrics
	// Tracing makes each delivery's CONSUMER span; nil is off.
	Tracing *tracing.Provider
}

// New returns a consumer. transient classifies handler failures.
func New(cfg Config, h Handler, transient func(error) bool, idem *idempotency.Store, log *slog.Logger, m *Metrics) *Consumer {
	return &Consumer{cfg: cfg, handler: h, transient: transient, idem: idem, log: log, m: m}
}

// Run consumes, reconnecting with backoff, until ctx ends; then it drains.
func (c *Consumer) Run(ctx context.Context) error {
	for {
		conn, err := amqpx.Dial(ctx, c.cfg.AMQPURL, c.log)
		if err != nil {
			return nil // ctx ended while dialing
		}
		c.setConnected(true)
		err = c.session(ctx, conn)
		c.setConnected(false)
		c.closeConn(ctx, conn)
		if ctx.Err() != nil {
			return err
		}
		c.log.WarnContext(ctx, "broker connection lost, reconnecting", "error", err)
	}
}

// session consumes on one connection until it closes or ctx ends.
func (c *Consumer) session(ctx context.Context, conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return err
	}
	replies, err := conn.Channel()
	if err != nil {
		return err
	}
	const tag = "worker"
	deliveries, err := ch.Consume(amqpx.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	// The broker cancels the consumer when the queue is deleted (or deleted
	// and declared again): deliveries stop while the connection lives on.
	cancelled := ch.NotifyCancel(make(chan string, 1))
	c.log.InfoContext(ctx, "consuming", "queue", amqpx.Queue, "concurrency", c.cfg.Concurrency, "prefetch", c.cfg.Prefetch)

	// Commands run on their own context: at shutdown they may finish for up to
	// ShutdownTimeout after ctx ends, and only then are they cancelled.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	settle := newSettler(ch, c.cfg.Prefetch/4, ackFlushAfter, func(err error) {
		c.log.Warn("ack failed; the broker will redeliver", "error", err)
	})
	giver := &giver{conn: conn}
	defer giver.close()
	// The members of batches run on a fixed pool of their own, whose
	// goroutines keep the stacks they grew: a new goroutine per member grew
	// its stack twice per command (runtime.copystack, 9% of a worker's CPU).
	// A reader waits for its batch's members, so they cannot run on the
	// readers' pool.
	members := make(chan func())
	var running sync.WaitGroup
	for range c.cfg.Concurrency {
		running.Go(func() {
			for f := range members {
				f()
			}
		})
	}
	defer func() { close(members); running.Wait() }()
	out := &outbox{replies: replies, settle: settle, giveBack: giver.publish, slots: make(chan struct{}, c.cfg.Concurrency), members: members}
	// A fixed pool reads the deliveries itself: one goroutine hand-off per
	// command. Every command, alone or a batch's member, runs in one of
	// Concurrency slots.
	var wg sync.WaitGroup
	for range c.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range deliveries {
				settle.start()
				if d.Type == protocol.BatchType {
					c.handleBatch(work, &d, out, ctx.Err() != nil)
					continue
				}
				c.handle(work, &d, out, ctx.Err() != nil)
			}
		}()
	}
	var lost error
	select {
	case <-ctx.Done():
	case e := <-closed:
		lost = fmt.Errorf("connection closed: %v", e)
	case e := <-chClosed:
		lost = fmt.Errorf("channel closed: %v", e)
	case _, ok := <-cancelled:
		if !ok { // amqp091 closes it with the channel
			lost = errors.New("channel closed")
			break
		}
		// Not ready until a new session has declared the queue again and
		// consumes from it.
		c.setConnected(false)
		lost = errors.New("the broker cancelled the consumer (queue deleted)")
	}
	// Cancelling the consumer closes deliveries, which ends the pool once the
	// commands in flight are done. If the cancel fails the pool still ends:
	// a channel that is gone has closed deliveries already, and drain closes
	// the channel at its timeout otherwise.
	if err := ch.Cancel(tag, false); err != nil && !errors.Is(err, amqp.ErrClosed) {
		c.log.WarnContext(ctx, "cancelling the consumer failed", "error", err)
	}
	c.drain(&wg, func() {
		cancelWork()
		if err := ch.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
			c.log.WarnContext(ctx, "closing the channel failed", "error", err)
		}
	})
	settle.flush()
	return lost
}

// closeConn closes a connection the consumer is done with. A connection that
// is already gone (amqp.ErrClosed, the usual case after a lost session) needs
// nothing more; any other failure is logged, since the broker will notice the
// dead socket and requeue what was not acked either way.
func (c *Consumer) closeConn(ctx context.Context, conn *amqp.Connection) {
	if err := conn.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
		c.log.WarnContext(ctx, "closing the broker connection failed", "error", err)
	}
}

// ackFlushAfter bounds how long a finished command's ack is held back.
const ackFlushAfter = 10 * time.Millisecond

// outbox is where a command's answers go: the reply channel and the settler
// of the consuming channel, or the batch the command is a member of.
type outbox struct {
	replies *amqp.Channel
	settle  sink
	// giveBack publishes a batch's member alone, confirmed (batch.go).
	giveBack func(amqp.Publishing) error
	// slots bounds the commands running at once.
	slots chan struct{}
	// members runs a batch's members, each on a goroutine of the pool.
	members chan<- func()
	// batch is the batch of a member: it gathers the replies, and the
	// member is given back alone rather than dead-lettered. Nil for a
	// command of its own.
	batch *batch
}

// reply sends res to the caller of delivery d, or leaves it with the batch
// d is a member of, which sends its members' replies together.
func (out *outbox) reply(ctx context.Context, d *amqp.Delivery, res *protocol.Result) error {
	if out.batch != nil {
		out.batch.addReply(d.CorrelationId, *res)
		return nil
	}
	return out.replies.PublishWithContext(ctx, "", d.ReplyTo, false, false, res.ReplyPublishing(d.CorrelationId))
}

// drain waits for in-flight commands, cancelling them after the timeout: a
// cancelled command is nacked back to the queue for another worker.
func (c *Consumer) drain(wg *sync.WaitGroup, cancel func()) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(c.cfg.ShutdownTimeout):
		c.log.Warn("shutdown timeout: cancelling in-flight commands")
		cancel()
		<-done
	}
}

func (c *Consumer) setConnected(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	c.m.connected.Set(v)
	if c.cfg.OnConnected != nil {
		c.cfg.OnConnected(up)
	}
}
