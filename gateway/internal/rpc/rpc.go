// Package rpc sends commands to the workers over RabbitMQ and waits for their
// replies: one connection, one channel in confirm mode shared by all requests,
// persistent mandatory publishes, and replies through Direct Reply-to matched
// by correlation id.
//
// A call ends in one of four ways, and the API maps each to one status:
//   - a result (nil error);
//   - ErrUnavailable: the command surely did not reach the broker (no
//     connection, the broker blocking publishers, the publish refused before
//     it was handed to the socket, or returned unroutable); the caller may
//     release its idempotency key;
//   - ErrUnknown: the publish was handed to the socket but not confirmed by
//     the deadline (or the connection was lost before the confirm, or the
//     broker nacked every copy sent); the command may run, so the caller
//     keeps its key, and the client goes on publishing it after the call
//     until a copy is confirmed (carry.go), so that it surely runs;
//   - ErrTimeout: the broker confirmed the command but no reply came in time.
//
// A nack does not say "not enqueued": when the node leading a quorum queue
// is lost, RabbitMQ nacks publishes it had not confirmed, and some of them
// are in the new leader's log and run all the same; a connection lost before
// the confirm says no more. So such a command is published again, the same
// message with the same command id, on the next connection if its own is
// gone, until a copy is confirmed or the deadline passes (then ErrUnknown); a
// copy that runs twice is answered from the worker's command ledger the
// second time.
//
// Publishes are made by one goroutine per connection (publisher.go), so a
// publish stuck in a socket write, when the broker stops reading, holds no
// caller past its deadline. While the broker blocks the connection (a memory
// or disk alarm, connection.blocked) Call answers ErrUnavailable at once and
// publishes nothing. The client stays Ready meanwhile: the alarm is the whole
// cluster's, every gateway is blocked alike, and a gateway taken out of its
// load balancer could not tell partners "503, retry later".
package rpc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/tracing"
)

var (
	// ErrUnavailable: the command surely did not reach the broker; it was not
	// enqueued.
	ErrUnavailable = errors.New("broker unavailable")
	// ErrUnknown: the command was handed to the connection but its publish
	// was not confirmed before the deadline; it may or may not be enqueued.
	ErrUnknown = errors.New("publish outcome unknown")
	// ErrTimeout: the command was enqueued but no reply came before the deadline.
	ErrTimeout = errors.New("no reply before the deadline")
)

type reply struct {
	res      protocol.Result
	returned bool
}

// session is one live connection's channel and its publisher.
type session struct {
	ch      *amqp.Channel
	closed  chan struct{}
	queue   chan *publishReq
	blocked atomic.Bool // the broker sent connection.blocked, not yet unblocked
}

// Client is the gateway's RPC client. Run keeps it connected.
type Client struct {
	url string
	log *slog.Logger
	m   *Metrics

	// Tracing makes the publish's PRODUCER span; nil is off.
	Tracing *tracing.Provider
	// BatchMax is the most commands the publisher puts in one message, at
	// most protocol.MaxBatch; 0 is that, 1 one command per message.
	BatchMax int

	cur     atomic.Pointer[session]
	seq     atomic.Uint64
	mu      sync.Mutex
	pending map[string]chan reply
	replies sync.Pool
	// carried counts the commands carried on after their call (carry.go);
	// stopped is closed when Run returns.
	carried sync.WaitGroup
	stopped chan struct{}
}

// New returns a client; call Run to connect.
func New(url string, log *slog.Logger, m *Metrics) *Client {
	c := &Client{url: url, log: log, m: m, pending: make(map[string]chan reply), stopped: make(chan struct{})}
	c.replies.New = func() any { return make(chan reply, 1) }
	return c
}

// Ready reports whether the client holds a live channel. A channel the
// broker blocks (see the package comment) is still ready.
func (c *Client) Ready() bool { return c.cur.Load() != nil }

// Run connects and reconnects with backoff until ctx ends.
func (c *Client) Run(ctx context.Context) {
	defer close(c.stopped)
	for ctx.Err() == nil {
		conn, err := amqpx.Dial(ctx, c.url, c.log)
		if err != nil {
			return
		}
		if err := c.serve(ctx, conn); err != nil && ctx.Err() == nil {
			c.log.WarnContext(ctx, "broker session ended, reconnecting", "error", err)
		}
		conn.Close()
	}
}

func (c *Client) serve(ctx context.Context, conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	deliveries, err := ch.Consume(amqpx.DirectReplyTo, "", true, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume replies: %w", err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 16))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	blockings := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	s := &session{ch: ch, closed: make(chan struct{}), queue: make(chan *publishReq, publishQueue)}
	go s.publisher(c.m, cmp.Or(min(c.BatchMax, protocol.MaxBatch), protocol.MaxBatch))
	c.cur.Store(s)
	c.m.connected.Set(1)
	c.log.InfoContext(ctx, "broker connected")
	defer func() {
		c.cur.Store(nil)
		c.m.connected.Set(0)
		c.m.blocked.Set(0)
		close(s.closed)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-chClosed:
			return fmt.Errorf("channel closed: %v", e)
		case b, ok := <-blockings:
			if !ok {
				return errors.New("connection closed")
			}
			c.setBlocked(ctx, s, b)
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("reply consumer closed")
			}
			c.replied(ctx, &d)
		case r := <-returns:
			if r.Type != protocol.BatchType {
				c.deliver(r.CorrelationId, reply{returned: true})
				break
			}
			for _, id := range protocol.BatchCorrelationIDs(r.Body) {
				c.deliver(id, reply{returned: true})
			}
		}
	}
}

// setBlocked follows connection.blocked and connection.unblocked.
func (c *Client) setBlocked(ctx context.Context, s *session, b amqp.Blocking) {
	s.blocked.Store(b.Active)
	if b.Active {
		c.m.blocked.Set(1)
		c.log.WarnContext(ctx, "broker blocks publishers; calls are answered 503", "reason", b.Reason)
		return
	}
	c.m.blocked.Set(0)
	c.log.InfoContext(ctx, "broker unblocked publishers")
}

// replied hands a reply, or each of a batch of replies, to its call.
func (c *Client) replied(ctx context.Context, d *amqp.Delivery) {
	if d.Type != protocol.BatchType {
		res, err := protocol.DecodeReply(d)
		if err != nil {
			c.log.WarnContext(ctx, "bad reply dropped", "error", err)
			return
		}
		c.deliver(d.CorrelationId, reply{res: res})
		return
	}
	replies, err := protocol.DecodeReplies(d.Body)
	if err != nil {
		c.log.WarnContext(ctx, "bad batch of replies dropped", "error", err)
		return
	}
	for _, r := range replies {
		c.deliver(r.CorrelationID, reply{res: r.Result})
	}
}

func (c *Client) deliver(id string, r reply) {
	c.mu.Lock()
	rc, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ok {
		rc <- r
	}
}

// Call publishes cmd and waits for its result until deadline passes. It returns
// ErrUnavailable when the command surely was not enqueued, ErrUnknown when it
// was sent but not confirmed in time, ErrTimeout when it was enqueued but did
// not complete in time.
func (c *Client) Call(ctx context.Context, cmd *protocol.Command, deadline time.Duration) (protocol.Result, error) {
	s := c.cur.Load()
	if s == nil {
		return protocol.Result{}, fmt.Errorf("%w: not connected", ErrUnavailable)
	}
	if s.blocked.Load() {
		return protocol.Result{}, errBlocked
	}
	id := strconv.FormatUint(c.seq.Add(1), 36)
	rc := c.replies.Get().(chan reply)
	c.mu.Lock()
	c.pending[id] = rc
	c.mu.Unlock()
	timer := time.NewTimer(deadline)
	defer timer.Stop()

	start := time.Now()
	res, err := c.await(ctx, s, cmd, id, rc, timer, start.Add(deadline))
	c.mu.Lock()
	_, unanswered := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	// A channel goes back to the pool only when it is surely empty: answered and
	// read, or never answered. A reply racing the deadline leaves it to the GC.
	if err == nil || unanswered {
		c.replies.Put(rc)
	}
	if err == nil {
		c.m.roundTrip.Observe(time.Since(start).Seconds())
	}
	return res, err
}

func (c *Client) await(ctx context.Context, s *session, cmd *protocol.Command, id string, rc chan reply, timer *time.Timer, until time.Time) (protocol.Result, error) {
	start := time.Now()
	pub := cmd.Publishing(id, amqpx.DirectReplyTo)
	pctx, span := c.startPublish(ctx, &pub)
	s, err := c.publishConfirmed(pctx, s, pub, timer, until)
	if err != nil {
		if errors.Is(err, ErrUnknown) {
			c.m.unconfirmed.Inc()
			c.carry(c.log.With("request_id", cmd.RequestID, "trace_id", tracing.TraceID(pctx)), pub)
		}
		endPublish(span, err, errors.Is(err, ErrUnknown))
		return protocol.Result{}, err
	}
	endPublish(span, nil, false)
	c.m.confirm.Observe(time.Since(start).Seconds())
	select {
	case r := <-rc:
		if r.returned {
			return protocol.Result{}, fmt.Errorf("%w: command returned unroutable", ErrUnavailable)
		}
		return r.res, nil
	case <-s.closed:
		return protocol.Result{}, ErrTimeout
	case <-timer.C:
		return protocol.Result{}, ErrTimeout
	case <-ctx.Done():
		return protocol.Result{}, ErrTimeout
	}
}

// nackPause is the first pause before a nacked command is published again;
// it doubles up to maxNackPause.
const (
	nackPause    = 20 * time.Millisecond
	maxNackPause = 500 * time.Millisecond
)

// pauses is the schedule between two copies of a command: nackPause,
// doubling up to longest, without jitter; it stops after stopAfter (0: never).
func pauses(longest, stopAfter time.Duration) backoff.BackOff {
	return backoff.NewExponentialBackOff(backoff.WithInitialInterval(nackPause), backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0), backoff.WithMaxInterval(longest), backoff.WithMaxElapsedTime(stopAfter))
}

// publishConfirmed publishes pub until the broker confirms a copy or the
// deadline (until, when timer fires) passes, and returns the session of the
// confirmed copy, whose channel the reply comes back on. Until a copy was
// handed to a connection, a failure is ErrUnavailable: nothing went out.
// After that the outcome is never "not enqueued": a copy nacked, or lost with
// its connection before the confirm, may still run (see the package comment),
// so it is published again, on the next connection if its own is gone, and a
// deadline passed meanwhile is ErrUnknown.
func (c *Client) publishConfirmed(ctx context.Context, s *session, pub amqp.Publishing, timer *time.Timer, until time.Time) (*session, error) {
	var b backoff.BackOff // made at the first copy published again: most calls publish one
	for copies := 0; ; {
		dc, err := s.publish(ctx, pub, timer)
		switch {
		case err != nil && copies == 0:
			return s, err
		case err != nil && (errors.Is(err, ErrUnknown) || !time.Now().Before(until) || ctx.Err() != nil):
			return s, fmt.Errorf("%w: %d copies written, then %v", ErrUnknown, copies, err)
		case err == nil:
			copies++
			select {
			case <-dc.Done():
				if dc.Acked() {
					return s, nil
				}
				c.m.nacked.Inc()
				republished(ctx, "nacked", copies)
				c.log.WarnContext(ctx, "broker nacked the command; publishing it again", "message_id", pub.MessageId, "copies", copies)
			case <-s.closed:
				republished(ctx, "connection lost", copies)
				c.log.WarnContext(ctx, "connection lost before the confirm; publishing the command again", "message_id", pub.MessageId, "copies", copies)
			case <-timer.C:
				return s, fmt.Errorf("%w: no publisher confirm in time", ErrUnknown)
			case <-ctx.Done():
				return s, fmt.Errorf("%w: %v", ErrUnknown, ctx.Err())
			}
		}
		if b == nil {
			b = pauses(maxNackPause, 0)
		}
		select {
		case <-time.After(b.NextBackOff()):
		case <-timer.C:
			return s, fmt.Errorf("%w: %d copies written, none confirmed by the deadline", ErrUnknown, copies)
		case <-ctx.Done():
			return s, fmt.Errorf("%w: %v", ErrUnknown, ctx.Err())
		}
		if next := c.cur.Load(); next != nil {
			s = next // the same session after a nack; the next one after a lost connection
		}
	}
}
