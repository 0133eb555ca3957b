package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/cenkalti/backoff/v4"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// errPanic marks a command whose handler panicked.
var errPanic = errors.New("handler panicked")

// process runs one delivery to its ack, nack or dead-letter.
func (c *Consumer) process(ctx context.Context, d *amqp.Delivery, out *outbox) {
	start := time.Now()
	c.m.inFlight.Inc()
	defer c.m.inFlight.Dec()
	if d.Redelivered {
		c.m.redeliveries.Inc()
	}
	cmd, err := protocol.DecodeCommand(d)
	if err == nil {
		err = verify(&cmd)
	}
	if err != nil {
		c.refuse(ctx, d, out, &cmd, err)
		return
	}
	log := c.log.With("request_id", cmd.RequestID, "partner", cmd.Partner, "method", cmd.Method)
	if cmd.Traceparent != "" {
		log = log.With("traceparent", cmd.Traceparent)
	}
	res, err := c.run(ctx, &cmd)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		c.requeue(ctx, d, out)
		c.m.commands.WithLabelValues(cmd.Method, OutcomeRequeued).Inc()
		log.WarnContext(ctx, "command requeued at shutdown")
		return
	default:
		c.giveUp(ctx, d, out, &cmd, res, err, log)
		return
	}
	if err := c.storeResult(ctx, &cmd, res); err != nil {
		c.requeue(ctx, d, out)
		c.m.commands.WithLabelValues(cmd.Method, OutcomeRequeued).Inc()
		return
	}
	c.reply(ctx, d, out.replies, res, log)
	out.settle.ack(d.DeliveryTag)
	elapsed := time.Since(start)
	c.m.duration.WithLabelValues(cmd.Method).Observe(elapsed.Seconds())
	outcome := OutcomeOK
	if res.Status >= http.StatusMultipleChoices { // anything but a 2xx is a refusal
		outcome = OutcomeRejected
	}
	c.m.commands.WithLabelValues(cmd.Method, outcome).Inc()
	log.InfoContext(ctx, "command", "status", res.Status, "duration_ms", float64(elapsed.Microseconds())/1000,
		"redelivered", d.Redelivered)
}

// refuse dead-letters a message that is not a command a gateway sent: it
// never runs, and its idempotency key is neither completed nor released, since
// the record it names may be another call's (or another partner's) in flight.
func (c *Consumer) refuse(ctx context.Context, d *amqp.Delivery, out *outbox, cmd *protocol.Command, err error) {
	reason := "decode"
	if errors.Is(err, protocol.ErrUntrusted) {
		reason = "invalid"
	}
	// The message is giveUp's, so that one search of the log finds every
	// dead-lettered command, whatever its reason.
	c.log.ErrorContext(ctx, "command dead-lettered", "reason", reason, "error", err,
		"message_id", d.MessageId, "request_id", cmd.RequestID, "partner", cmd.Partner, "method", cmd.Method)
	c.deadLetter(d, out, reason)
	if protocol.Known(cmd.Method) { // the method label takes registered names only
		c.m.commands.WithLabelValues(cmd.Method, OutcomeDeadLettered).Inc()
	}
}

// verify checks a decoded command's idempotency headers against its params,
// as the gateway built them: a read takes no key; a key names the command's
// partner; a derived key is the one the params derive; the fingerprint is the
// one of the params. A keyed method without a key is an un-keyed call. What
// fails is protocol.ErrUntrusted.
func verify(cmd *protocol.Command) error {
	if cmd.IdemKey == "" {
		return nil // DecodeCommand saw that the other idempotency headers are absent too
	}
	m, _ := protocol.Lookup(cmd.Method) // DecodeCommand saw that it is registered
	if !m.Keyed() {
		return fmt.Errorf("%w: %s takes no idempotency key, and this one carries one", protocol.ErrUntrusted, m.Name)
	}
	partner, key, derived, ok := idempotency.ParseKey(cmd.IdemKey)
	if !ok || partner != cmd.Partner {
		return fmt.Errorf("%w: the idempotency key is not one of partner %d", protocol.ErrUntrusted, cmd.Partner)
	}
	if !derived && !idempotency.ValidHeaderKey(key) {
		return fmt.Errorf("%w: the idempotency key is not 1 to 255 printable ASCII characters", protocol.ErrUntrusted)
	}
	params, perr := protocol.DecodeParams(cmd.Method, cmd.Params)
	if perr != nil {
		return fmt.Errorf("%w: params of a keyed call do not validate: %s", protocol.ErrUntrusted, perr.Message)
	}
	if derived && key != m.Key(params) {
		return fmt.Errorf("%w: the derived idempotency key is not the one of the params", protocol.ErrUntrusted)
	}
	if idempotency.Fingerprint(cmd.Method, protocol.Canonical(params)) != cmd.IdemFP {
		return fmt.Errorf("%w: the fingerprint is not the one of the params", protocol.ErrUntrusted)
	}
	cmd.Decoded = params // the handler runs them without decoding them again
	return nil
}

// FailureRecorder is a Handler that records a command that failed
// permanently, so that the partner can look it up (getRequest) and a replay
// from the dead-letter queue is told apart from a redelivery.
type FailureRecorder interface {
	Failed(ctx context.Context, cmd *protocol.Command, res protocol.Result) error
}

// giveUp dead-letters a command that failed permanently (invalid, panicked or
// refused by the database), releasing its idempotency key so the partner's
// retry is not answered "in progress" but runs again, and answers the partner:
// the refusal of an invalid command, otherwise 500 internal with its request
// id, recorded as failed.
func (c *Consumer) giveUp(ctx context.Context, d *amqp.Delivery, out *outbox, cmd *protocol.Command,
	res protocol.Result, err error, log *slog.Logger) {
	reason := "permanent"
	if errors.Is(err, errPanic) {
		reason = "panic"
	} else if res.Status != 0 {
		reason = "invalid"
	}
	log.ErrorContext(ctx, "command dead-lettered", "reason", reason, "error", err)
	if reason != "invalid" {
		e := protocol.NewError(http.StatusInternalServerError, protocol.CodeInternal, "",
			"the call failed inside the service; nothing was changed, and it was kept for an operator")
		res = protocol.Result{Status: e.Status, Body: e.Body(cmd.RequestID)}
		if r, ok := c.handler.(FailureRecorder); ok {
			if err := r.Failed(ctx, cmd, res); err != nil {
				log.WarnContext(ctx, "recording the failure in the ledger failed", "error", err)
			}
		}
	}
	c.releaseKey(ctx, cmd, log)
	c.reply(ctx, d, out.replies, res, log)
	c.deadLetter(d, out, reason)
	c.m.commands.WithLabelValues(cmd.Method, OutcomeDeadLettered).Inc()
}

// run calls the handler, retrying transient failures with backoff until ctx
// ends. A panic becomes a permanent failure.
func (c *Consumer) run(ctx context.Context, cmd *protocol.Command) (protocol.Result, error) {
	return backoff.RetryWithData(func() (res protocol.Result, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = backoff.Permanent(fmt.Errorf("%w: %v\n%s", errPanic, r, debug.Stack()))
			}
		}()
		res, err = c.handler.Handle(ctx, cmd)
		dep := dependencyOf(err)
		if err != nil && res.Status == 0 && dep == "database" {
			c.m.dbErrors.Inc()
		}
		if err != nil && c.transient(err) && ctx.Err() == nil {
			c.m.retries.WithLabelValues(dep).Inc()
			c.log.WarnContext(ctx, "transient failure, retrying", "request_id", cmd.RequestID, "dependency", dep,
				"error", err)
			return res, err
		}
		if err != nil {
			return res, backoff.Permanent(err)
		}
		return res, nil
	}, backoff.WithContext(newBackoff(), ctx))
}

// dependencyOf names what a handler's failure came from: the error's own
// Dependency (the tenant storage says "storage"), else the database.
func dependencyOf(err error) string {
	var d interface{ Dependency() string }
	if errors.As(err, &d) {
		return d.Dependency()
	}
	return "database"
}

// storeResult writes the result into the idempotency record before the reply,
// so a lost reply, a gateway restart or a 202 never loses it. A refusal under a
// key derived from a create call (customer_not_found, renewal_too_early) is
// not kept: the key is released, so the marketplace's retry after the partner
// fixed the cause runs again instead of replaying the refusal for a day.
//
// The records the command ended (a deleted user's derived key) are deleted
// too, so the same create call runs again.
func (c *Consumer) storeResult(ctx context.Context, cmd *protocol.Command, res protocol.Result) error {
	if cmd.IdemKey == "" && len(res.Ended) == 0 {
		return nil
	}
	r := idempotency.Result{Status: res.Status, Body: res.Body}
	release := !idempotency.Keeps(cmd.IdemKey, res.Status)
	return backoff.Retry(func() error {
		var err error
		for _, key := range res.Ended {
			if err = c.idem.End(ctx, key); err != nil {
				break
			}
		}
		switch {
		case err != nil, cmd.IdemKey == "":
		case release:
			err = c.idem.Release(ctx, cmd.IdemKey, cmd.IdemToken, cmd.IdemFP)
		default:
			err = c.idem.Complete(ctx, cmd.IdemKey, cmd.IdemToken, cmd.IdemFP, r)
		}
		if err != nil && ctx.Err() == nil {
			c.m.retries.WithLabelValues("redis").Inc()
			c.log.WarnContext(ctx, "storing result failed, retrying", "request_id", cmd.RequestID, "error", err)
		}
		return err
	}, backoff.WithContext(newBackoff(), ctx))
}

// releaseKey frees the idempotency key of a command that will not complete, so
// the partner's retry is not refused as in progress.
func (c *Consumer) releaseKey(ctx context.Context, cmd *protocol.Command, log *slog.Logger) {
	if cmd.IdemKey == "" {
		return
	}
	if err := c.idem.Release(ctx, cmd.IdemKey, cmd.IdemToken, cmd.IdemFP); err != nil {
		log.WarnContext(ctx, "releasing idempotency key failed", "error", err)
	}
}

func (c *Consumer) reply(ctx context.Context, d *amqp.Delivery, ch *amqp.Channel, res protocol.Result, log *slog.Logger) {
	if d.ReplyTo == "" {
		return
	}
	// The result is already stored, so a reply lost here costs the partner a 202.
	if err := ch.PublishWithContext(ctx, "", d.ReplyTo, false, false, res.ReplyPublishing(d.CorrelationId)); err != nil {
		log.WarnContext(ctx, "reply not sent", "error", err)
	}
}

// requeue gives d back to the queue, for this worker or another. A failed
// nack is only logged: it means the channel is failing, and the broker
// requeues every unsettled delivery of a channel when it closes.
func (c *Consumer) requeue(ctx context.Context, d *amqp.Delivery, out *outbox) {
	if err := out.settle.reject(d, true); err != nil {
		c.log.WarnContext(ctx, "requeue failed; the broker will redeliver", "error", err)
	}
}

func (c *Consumer) deadLetter(d *amqp.Delivery, out *outbox, reason string) {
	c.m.deadLettered.WithLabelValues(reason).Inc()
	if err := out.settle.reject(d, false); err != nil {
		c.log.Warn("reject failed; the broker will redeliver", "error", err)
	}
}

func newBackoff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0
	return b
}
