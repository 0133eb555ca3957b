package consumer

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/logging"
	"github.com/oneoffice/provisioner/shared/netx"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// settlement is what the broker is told of a delivery.
type settlement int

const (
	settleAck        settlement = iota // done: acked, coalesced by the settler
	settleRequeue                      // given back, for this worker or another
	settleDeadLetter                   // to the dead-letter queue, never run again unless replayed
)

// keyFate is what becomes of the idempotency record a delivery names.
type keyFate int

const (
	keyNone     keyFate = iota // the delivery names no record
	keyKeep                    // left as it is: not this delivery's to touch, or held for its redelivery
	keyComplete                // the result stored, for replay
	keyRelease                 // freed, so that the partner's retry runs again
)

// Reasons of a requeue, in the log line. Every requeue but a batch member's
// given back alone (requeueSplit, batch.go) happens at shutdown: the run and
// the storing of its result retry for as long as the worker runs.
const (
	requeuePrefetched = "prefetched" // delivered while stopping, never run
	requeueCancelled  = "cancelled"  // run cancelled at the shutdown timeout
	requeueUnstored   = "unstored"   // the result not stored before the shutdown timeout
)

// outcome is what becomes of one delivery, decided once by process (or by
// prefetched at shutdown) and carried out by apply.
type outcome struct {
	settle settlement
	// reason says why a delivery is dead-lettered (decode, invalid, panic,
	// permanent: the dead_lettered_total label) or requeued.
	reason string
	err    error            // the failure behind a dead-letter or a requeue
	cmd    protocol.Command // as far as it was decoded
	reply  *protocol.Result // sent to the caller once the key's fate is stored; nil: no reply
	key    keyFate
	ended  []string // records the command ended, deleted with the key's fate
}

// apply carries out o for delivery d, in this order and nowhere else: the
// key's fate and the ended records are stored (retried with backoff while ctx
// lives; if that fails, the delivery is requeued instead, unanswered), the
// reply is sent, the broker is told, and the delivery is counted, timed from
// start and logged in one line.
func (c *Consumer) apply(ctx context.Context, d *amqp.Delivery, out *outbox, o outcome, start time.Time, span trace.Span) {
	if err := c.storeKey(ctx, &o); err != nil {
		// The redelivery stores it, or runs the command again if it failed.
		o = outcome{settle: settleRequeue, reason: requeueUnstored, err: errors.Join(o.err, err), cmd: o.cmd, key: keyKeep}
	}
	var problems []slog.Attr
	if o.reply != nil && d.ReplyTo != "" {
		// The key's fate is already stored, so a reply lost here costs the
		// partner a 202 (or a retry), never the result.
		rs := c.replySpan(ctx, d)
		err := out.reply(ctx, d, o.reply)
		if err != nil {
			problems = append(problems, slog.Any("reply_error", err))
		}
		endReply(rs, err)
	}
	var err error
	switch o.settle {
	case settleAck:
		ss := c.settleSpan(ctx, "ack", d)
		acked := out.settle.ack(d.DeliveryTag)
		endSettle(ss, acked, acked == 0, nil)
	case settleRequeue:
		ss := c.settleSpan(ctx, "nack", d)
		err = out.settle.reject(d, true)
		endSettle(ss, 0, false, err)
	case settleDeadLetter:
		c.m.deadLettered.WithLabelValues(o.reason).Inc()
		ss := c.settleSpan(ctx, "nack", d)
		err = out.settle.reject(d, false)
		endSettle(ss, 0, false, err)
	}
	if err != nil {
		// The channel is failing: the broker requeues every unsettled
		// delivery of a channel when it closes.
		problems = append(problems, slog.Any("settle_error", err))
	}
	elapsed := time.Since(start)
	label := o.label()
	if mm := c.m.ofMethod(o.cmd.Method); mm != nil { // registered names only
		mm.commands[label].Inc()
		observe(mm, elapsed, span)
	}
	c.logOutcome(ctx, d, &o, label, elapsed, problems)
	endSpan(span, &o, label)
}

// label is the outcome label of commands_total.
func (o *outcome) label() string {
	switch {
	case o.settle == settleRequeue:
		return OutcomeRequeued
	case o.settle == settleDeadLetter:
		return OutcomeDeadLettered
	case o.reply.Status >= http.StatusMultipleChoices: // anything but a 2xx is a refusal
		return OutcomeRejected
	}
	return OutcomeOK
}

// logOutcome writes the one line of a delivery: info when it was answered,
// info for a prefetched delivery given back, a warning for a command cut off
// at shutdown (its error is the cancellation, not a fault), an error when it
// was dead-lettered.
func (c *Consumer) logOutcome(ctx context.Context, d *amqp.Delivery, o *outcome, label string,
	elapsed time.Duration, problems []slog.Attr) {
	cmd := &o.cmd
	var buf [12]slog.Attr // every attribute a line can have, problems included
	attrs := append(buf[:0], slog.String("request_id", cmd.RequestID), slog.Int64("partner", cmd.Partner),
		slog.String("method", cmd.Method), slog.String("outcome", label),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000), slog.Bool("redelivered", d.Redelivered))
	if o.reason != "" {
		attrs = append(attrs, slog.String("reason", o.reason))
	}
	if o.err != nil {
		attrs = append(attrs, slog.Any("error", o.err))
	}
	attrs = append(attrs, problems...)
	switch {
	case o.settle == settleAck:
		logging.Attrs(ctx, c.log, slog.LevelInfo, "command", append(attrs, slog.Int("status", o.reply.Status))...)
	case o.settle == settleDeadLetter:
		// One message for every dead-letter, whatever its reason, so that one
		// search of the log finds them all.
		logging.Attrs(ctx, c.log, slog.LevelError, "command dead-lettered", append(attrs, slog.String("message_id", d.MessageId))...)
	case o.reason == requeuePrefetched:
		logging.Attrs(ctx, c.log, slog.LevelInfo, "command requeued at shutdown", attrs...)
	case o.reason == requeueSplit:
		logging.Attrs(ctx, c.log, slog.LevelWarn, "command of a batch given back to run alone", attrs...)
	default:
		logging.Attrs(ctx, c.log, slog.LevelWarn, "command requeued at shutdown", attrs...)
	}
}

// storeKey carries out the key's fate and deletes the records the command
// ended, before the reply, so that a lost reply, a gateway restart or a 202
// never loses the result. It retries with backoff until ctx ends.
func (c *Consumer) storeKey(ctx context.Context, o *outcome) error {
	if (o.key == keyNone || o.key == keyKeep) && len(o.ended) == 0 {
		return nil
	}
	err := c.storeKeyOnce(ctx, o)
	if err == nil {
		return nil // the usual case, without the retry machinery
	}
	// The retries go as they always did: the failure just met is the
	// first attempt's, then the pause, then the next attempt.
	first := true
	return backoff.Retry(func() error {
		if first {
			first = false
			return err
		}
		return c.storeKeyOnce(ctx, o)
	}, backoff.WithContext(newBackoff(), ctx))
}

// storeKeyOnce is one attempt of storeKey.
func (c *Consumer) storeKeyOnce(ctx context.Context, o *outcome) error {
	cmd := &o.cmd
	var err error
	for _, key := range o.ended {
		if err = c.idem.End(ctx, key); err != nil {
			break
		}
	}
	switch {
	case err != nil:
	case o.key == keyComplete:
		err = c.idem.Complete(ctx, cmd.IdemKey, cmd.IdemToken, cmd.IdemFP,
			idempotency.Result{Status: o.reply.Status, Body: o.reply.Body})
	case o.key == keyRelease:
		err = c.idem.Release(ctx, cmd.IdemKey, cmd.IdemToken, cmd.IdemFP)
	}
	if err != nil && ctx.Err() == nil {
		c.m.retries.WithLabelValues("redis").Inc()
		c.log.WarnContext(ctx, "storing result failed, retrying", "request_id", cmd.RequestID, "error", err)
	}
	return err
}

func newBackoff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	// A dependency that comes back is tried again within a second.
	b.MaxInterval = netx.MaxRedialPause
	b.MaxElapsedTime = 0
	return b
}

// settler coalesces the acks of one consuming channel. The broker numbers the
// deliveries of a channel 1, 2, 3...; a finished command's ack is held until
// every lower tag is settled too, and then one ack with multiple=true settles
// the whole run. On a quorum queue every settlement is a log entry the broker
// replicates and writes, so one ack per batch instead of one per command saves
// broker CPU as well as a write per command here.
//
// An ack is held only while other commands of this channel are running (one of
// them will flush it when it finishes), and for at most maxHeld commands or
// flushAfter. A lone caller's command is acked at once. Acks held when the
// worker dies are redelivered; every command is idempotent, so a redelivery
// gets the stored answer and provisions nothing twice.
type settler struct {
	ch         *amqp.Channel
	maxHeld    int
	flushAfter time.Duration
	onError    func(error)

	mu      sync.Mutex
	next    uint64          // lowest tag not settled yet
	done    map[uint64]bool // finished tags above next: true while their ack is still to send
	held    int             // acked commands below next whose ack is not sent yet
	top     uint64          // the highest of them: a multiple ack names a tag still outstanding
	running int             // commands started and not finished
	timer   *time.Timer     // flushes held acks after flushAfter
	armed   bool            // timer is set
}

func newSettler(ch *amqp.Channel, maxHeld int, flushAfter time.Duration, onError func(error)) *settler {
	s := &settler{ch: ch, maxHeld: max(1, maxHeld), flushAfter: flushAfter, onError: onError,
		next: 1, done: make(map[uint64]bool)}
	s.timer = time.AfterFunc(time.Hour, s.flush)
	s.timer.Stop()
	return s
}

// start counts a command as running.
func (s *settler) start() {
	s.mu.Lock()
	s.running++
	s.mu.Unlock()
}

// ack settles a command that finished: its ack is sent now or held. It
// returns how many deliveries the multiple ack it sent settled, 0 when it
// held the ack for a later one.
func (s *settler) ack(tag uint64) (acked int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	s.done[tag] = true
	s.advance()
	switch {
	case s.held == 0:
	case s.running == 0 || s.held >= s.maxHeld:
		acked = s.held
		s.send()
	case !s.armed:
		s.armed = true
		s.timer.Reset(s.flushAfter)
	}
	// A slow command holds back the run behind it; past maxHeld the finished
	// commands above it are acked one by one so that they do not fill the
	// prefetch window.
	if len(s.done) >= s.maxHeld {
		for t, pending := range s.done {
			if pending {
				s.sendOne(t)
				s.done[t] = false
			}
		}
	}
	return acked
}

// reject gives a command back to the broker now (requeued or dead-lettered)
// and settles its tag.
func (s *settler) reject(d *amqp.Delivery, requeue bool) error {
	err := d.Nack(false, requeue)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	s.done[d.DeliveryTag] = false
	s.advance()
	if s.held > 0 && s.running == 0 {
		s.send()
	}
	return err
}

// flush sends the held acks: the timer calls it, and the session before it
// closes the channel.
func (s *settler) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = false
	if s.held > 0 {
		s.send()
	}
}

// advance moves next past the settled run.
func (s *settler) advance() {
	for {
		pending, ok := s.done[s.next]
		if !ok {
			return
		}
		delete(s.done, s.next)
		if pending {
			s.held++
			s.top = s.next
		}
		s.next++
	}
}

// send acks the held commands at once: every tag up to top is settled, and
// those already acked or rejected one by one are no longer outstanding.
func (s *settler) send() {
	s.timer.Stop()
	s.armed = false
	s.held = 0
	if err := s.ch.Ack(s.top, true); err != nil {
		s.onError(err)
	}
}

func (s *settler) sendOne(tag uint64) {
	if err := s.ch.Ack(tag, false); err != nil {
		s.onError(err)
	}
}
