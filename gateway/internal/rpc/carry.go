package rpc

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/idempotency"
)

// A command answered 202 because its publish was not confirmed by the
// deadline (ErrUnknown) was promised to the partner: "it still completes".
// Its copy may be lost all the same (written to a node that stopped before
// it confirmed or kept it, and no new connection came up before the
// deadline), so the client carries it on after the answer: it publishes the
// same message again, on whatever connection it holds, until a copy is
// confirmed. A copy that arrives twice runs once: the worker's command ledger
// knows the command id.
const (
	// carryFor bounds the carrying: a minute less than the call's key is
	// held pending, so that the partner's retries are told 409 meanwhile and
	// never run a second command beside the carried one.
	carryFor = idempotency.PendingTTL - time.Minute
	// carryAttempt bounds one publish and its confirm.
	carryAttempt = 10 * time.Second
	// maxCarryPause is the longest pause between two tries.
	maxCarryPause = time.Second
)

// carry publishes pub in the background until a copy is confirmed, carryFor
// passes or the client is stopped (Drain waits for it first).
func (c *Client) carry(log *slog.Logger, pub amqp.Publishing) {
	c.carried.Add(1)
	c.m.carried.Inc()
	go func() {
		defer c.carried.Done()
		defer c.m.carried.Dec()
		b := pauses(maxCarryPause, carryFor)
		for tries := 1; ; tries++ {
			if s := c.cur.Load(); s != nil && !s.blocked.Load() {
				if c.publishOnce(s, pub) == nil {
					c.m.carriedConfirmed.Inc()
					log.Info("command confirmed after its call was answered 202", "message_id", pub.MessageId, "tries", tries)
					return
				}
			}
			pause := b.NextBackOff()
			if pause == backoff.Stop {
				c.m.carriedLost.Inc()
				log.Error("command answered 202 never confirmed; a retry runs it once the partner's key expires",
					"message_id", pub.MessageId, "tries", tries, "carried_for", carryFor)
				return
			}
			select {
			case <-time.After(pause):
			case <-c.stopped:
				c.m.carriedLost.Inc()
				log.Error("client stopped while carrying a command answered 202", "message_id", pub.MessageId, "tries", tries)
				return
			}
		}
	}()
}

// publishOnce publishes pub on s once and waits for its confirm, within
// carryAttempt; nil only when the broker confirmed it.
func (c *Client) publishOnce(s *session, pub amqp.Publishing) error {
	ctx, cancel := context.WithTimeout(context.Background(), carryAttempt)
	defer cancel()
	timer := time.NewTimer(carryAttempt)
	defer timer.Stop()
	dc, err := s.publish(ctx, pub, timer)
	if err != nil {
		return err
	}
	select {
	case <-dc.Done():
		if dc.Acked() {
			return nil
		}
		c.m.nacked.Inc()
		return errors.New("nacked")
	case <-s.closed:
		return errors.New("connection lost before the confirm")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Drain waits until every carried command is confirmed or given up, or ctx
// ends; the gateway calls it at shutdown before it stops the client.
func (c *Client) Drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() { c.carried.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.New("commands answered 202 still unconfirmed at shutdown")
	}
}
