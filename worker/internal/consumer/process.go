package consumer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/cenkalti/backoff/v4"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/tracing"
)

// errPanic marks a command whose handler panicked.
var errPanic = errors.New("handler panicked")

// handle takes one delivery to its settlement: process (or, once the worker
// is stopping, prefetched) decides what becomes of it, and apply carries that
// out.
func (c *Consumer) handle(ctx context.Context, d *amqp.Delivery, out *outbox, stopping bool) {
	start := time.Now()
	ctx, span := c.startSpan(ctx, d)
	if stopping {
		c.apply(ctx, d, out, prefetched(d), start, span)
		return
	}
	out.slots <- struct{}{}
	defer func() { <-out.slots }()
	c.m.inFlight.Inc()
	defer c.m.inFlight.Dec()
	c.apply(ctx, d, out, c.process(ctx, d, out.batch != nil), start, span)
}

// prefetched is the outcome of a delivery the broker sent ahead that arrives
// once the worker is stopping: it is not run but given back, for this worker
// or another, its key still held for it.
func prefetched(d *amqp.Delivery) outcome {
	cmd, _ := protocol.DecodeCommand(d) // as far as it decodes, for the log line
	return outcome{settle: settleRequeue, reason: requeuePrefetched, cmd: cmd, key: keyKeep}
}

// process runs one delivery and decides its outcome. A batch's member that
// would be dead-lettered is given back alone instead (batch.go), before
// anything of its failure is recorded: its copy is dead-lettered on its own.
func (c *Consumer) process(ctx context.Context, d *amqp.Delivery, member bool) outcome {
	if d.Redelivered {
		c.m.redeliveries.Inc()
	}
	cmd, err := protocol.DecodeCommand(d)
	cmd.TraceID = tracing.TraceID(ctx)
	if err == nil {
		err = verify(&cmd)
	}
	if err != nil {
		if member {
			return givenBack(cmd, err)
		}
		return refused(cmd, err)
	}
	res, err := c.run(ctx, &cmd)
	switch {
	case err == nil:
		return answered(cmd, res)
	case ctx.Err() != nil:
		// Cut off at shutdown: the key stays held for the redelivery.
		return outcome{settle: settleRequeue, reason: requeueCancelled, err: err, cmd: cmd, key: keyKeep}
	case member:
		return givenBack(cmd, err)
	default:
		return c.giveUp(ctx, cmd, res, err)
	}
}

// givenBack is the outcome of a batch's member given back to run alone: not
// answered, its key left held for the copy.
func givenBack(cmd protocol.Command, err error) outcome {
	return outcome{settle: settleRequeue, reason: requeueSplit, err: err, cmd: cmd, key: keyKeep}
}

// answered is the outcome of a command the handler answered: the answer is
// stored (a refusal under a derived key releases the key instead, see
// idempotency.Keeps), replied and acked.
func answered(cmd protocol.Command, res protocol.Result) outcome {
	key := keyNone
	switch {
	case cmd.IdemKey == "":
	case idempotency.Keeps(cmd.IdemKey, res.Status):
		key = keyComplete
	default:
		key = keyRelease
	}
	return outcome{settle: settleAck, cmd: cmd, reply: &res, key: key, ended: res.Ended}
}

// refused is the outcome of a message that is not a command a gateway sent:
// it never runs and is dead-lettered unanswered, and its idempotency key is
// neither completed nor released, since the record it names may be another
// call's (or another partner's) in flight.
func refused(cmd protocol.Command, err error) outcome {
	reason := "decode"
	if errors.Is(err, protocol.ErrUntrusted) {
		reason = "invalid"
	}
	return outcome{settle: settleDeadLetter, reason: reason, err: err, cmd: cmd, key: keyKeep}
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
	m := cmd.Def // DecodeCommand saw that it is registered
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
	params, perr := m.Decode(cmd.Params)
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

// giveUp is the outcome of a command that failed permanently (invalid,
// panicked or refused by the database): dead-lettered, its idempotency key
// released so the partner's retry is not answered "in progress" but runs
// again, and the partner answered: the refusal of an invalid command,
// otherwise 500 internal with its request id, recorded as failed.
func (c *Consumer) giveUp(ctx context.Context, cmd protocol.Command, res protocol.Result, err error) outcome {
	reason := "permanent"
	if errors.Is(err, errPanic) {
		reason = "panic"
	} else if res.Status != 0 {
		reason = "invalid"
	}
	if reason != "invalid" {
		e := protocol.NewError(http.StatusInternalServerError, protocol.CodeInternal, "",
			"the call failed inside the service; nothing was changed, and it was kept for an operator")
		res = protocol.Result{Status: e.Status, Body: e.Body(cmd.RequestID)}
		if r, ok := c.handler.(FailureRecorder); ok {
			if ferr := r.Failed(ctx, &cmd, res); ferr != nil {
				err = errors.Join(err, fmt.Errorf("recording the failure in the ledger: %w", ferr))
			}
		}
	}
	key := keyNone
	if cmd.IdemKey != "" {
		key = keyRelease
	}
	return outcome{settle: settleDeadLetter, reason: reason, err: err, cmd: cmd, reply: &res, key: key}
}

// run calls the handler, retrying transient failures with backoff until ctx
// ends. A panic becomes a permanent failure. The first attempt is made
// without the retry machinery: nearly every command needs no second.
func (c *Consumer) run(ctx context.Context, cmd *protocol.Command) (protocol.Result, error) {
	res, err := c.attempt(ctx, cmd)
	var perm *backoff.PermanentError
	if err == nil || errors.As(err, &perm) {
		return res, unwrapPermanent(err)
	}
	// The retries go as they always did: the failure just met is the
	// first attempt's, then the pause, then the next attempt.
	first := true
	return backoff.RetryWithData(func() (protocol.Result, error) {
		if first {
			first = false
			return res, err
		}
		return c.attempt(ctx, cmd)
	}, backoff.WithContext(newBackoff(), ctx))
}

// attempt runs the handler once; a failure that is not to be retried comes
// back as a backoff.PermanentError.
func (c *Consumer) attempt(ctx context.Context, cmd *protocol.Command) (res protocol.Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = backoff.Permanent(fmt.Errorf("%w: %v\n%s", errPanic, r, debug.Stack()))
		}
	}()
	res, err = c.handler.Handle(ctx, cmd)
	if err == nil {
		return res, nil
	}
	dep := dependencyOf(err)
	if res.Status == 0 && dep == "database" {
		c.m.dbErrors.Inc()
	}
	if c.transient(err) && ctx.Err() == nil {
		c.m.retries.WithLabelValues(dep).Inc()
		c.log.WarnContext(ctx, "transient failure, retrying", "request_id", cmd.RequestID, "dependency", dep,
			"error", err)
		return res, err
	}
	return res, backoff.Permanent(err)
}

// unwrapPermanent returns the error a backoff.PermanentError holds, as
// backoff.Retry does.
func unwrapPermanent(err error) error {
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		return perm.Err
	}
	return err
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
