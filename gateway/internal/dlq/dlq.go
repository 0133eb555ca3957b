// Package dlq lets an operator inspect the dead-letter queue and replay its
// messages onto the command exchange once the cause is fixed.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// List prints up to limit dead-lettered messages without removing them.
func List(ctx context.Context, url string, limit int, w io.Writer) error {
	return each(ctx, url, limit, func(ch *amqp.Channel, d amqp.Delivery) error {
		reason := ""
		if deaths, ok := d.Headers["x-death"].([]any); ok && len(deaths) > 0 {
			if t, ok := deaths[0].(amqp.Table); ok {
				reason = fmt.Sprint(t["reason"])
			}
		}
		// A batch (dead-lettered whole only when it does not decode, or past
		// the delivery limit) is listed a line per command.
		members := []amqp.Delivery{d}
		if d.Type == protocol.BatchType {
			if ms, err := protocol.DecodeBatch(&d); err == nil {
				members = ms
			}
		}
		for _, m := range members {
			fmt.Fprintf(w, "%s\tmethod=%s\tpartner=%v\trequest_id=%v\treason=%s\tbody=%s\n",
				m.Timestamp.UTC().Format(time.RFC3339), m.Type, m.Headers["partner"], m.Headers["request_id"], reason, m.Body)
		}
		return nil // left unacked: closing the channel puts it back
	})
}

// Replay republishes up to limit dead-lettered messages to the command queue,
// with confirms, and removes each from the DLQ only once the broker confirmed it.
func Replay(ctx context.Context, url string, limit int, w io.Writer) error {
	n := 0
	err := each(ctx, url, limit, func(ch *amqp.Channel, d amqp.Delivery) error {
		headers := amqp.Table{}
		for k, v := range d.Headers {
			if k != "x-death" && k != "x-first-death-exchange" && k != "x-first-death-queue" && k != "x-first-death-reason" {
				headers[k] = v
			}
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, amqpx.Exchange, amqpx.RoutingKey, true, false, amqp.Publishing{
			ContentType: d.ContentType, DeliveryMode: amqp.Persistent, CorrelationId: d.CorrelationId,
			MessageId: d.MessageId, Type: d.Type, Timestamp: d.Timestamp, Headers: headers, Body: d.Body,
		})
		if err != nil {
			return err
		}
		ok, err := dc.WaitContext(ctx)
		if err == nil && !ok {
			err = errNotConfirmed
		}
		if err != nil {
			// A failed nack changes nothing: the message is unacked, so
			// closing the channel puts it back in the DLQ all the same.
			_ = d.Nack(false, true)
			return fmt.Errorf("replay not confirmed: %w", err)
		}
		n++
		return d.Ack(false)
	})
	fmt.Fprintf(w, "replayed %d\n", n)
	return err
}

// errNotConfirmed is a replay the broker refused with a negative confirm.
var errNotConfirmed = errors.New("the broker nacked the publish")

// each hands up to limit DLQ messages to fn on a confirm-mode channel.
func each(ctx context.Context, url string, limit int, fn func(*amqp.Channel, amqp.Delivery) error) (err error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	// A clean close tells that the broker took every ack sent before it; a
	// failed one is reported, as messages already replayed may then still be
	// in the DLQ and be replayed again.
	defer func() {
		if cerr := conn.Close(); cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
			err = errors.Join(err, fmt.Errorf("close: %w", cerr))
		}
	}()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := amqpx.Declare(ch); err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	// Unacked messages stay out of the queue until the channel closes, so one
	// is never read twice.
	for i := 0; i < limit && ctx.Err() == nil; i++ {
		d, ok, err := ch.Get(amqpx.DeadQueue, false)
		if err != nil || !ok {
			return err
		}
		if err := fn(ch, d); err != nil {
			return err
		}
	}
	return nil
}
