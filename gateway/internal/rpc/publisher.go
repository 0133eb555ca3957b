package rpc

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
)

// publishQueue bounds the publishes waiting for the connection's publisher.
// A caller that cannot even queue its publish before its deadline has sent
// nothing.
const publishQueue = 256

// States of a publish request. The publisher and the caller each move a
// request out of queued once; whoever wins decides whether it was sent.
const (
	queued  int32 = iota
	taken         // the publisher took it: it may reach the broker
	dropped       // the caller gave up first: it was never sent
)

// publishReq is one command handed to the publisher.
type publishReq struct {
	msg   amqp.Publishing
	state atomic.Int32
	done  chan struct{} // capacity 1: the publisher is done with it
	dc    *amqp.DeferredConfirmation
	err   error
}

// publisher makes the session's publishes, one at a time as amqp091 does
// on a channel anyway. A publish blocked in a socket write (the broker has
// stopped reading) blocks this goroutine only; the callers wait for it with
// their deadline. It ends with the session.
func (s *session) publisher() {
	for {
		select {
		case <-s.closed:
			return
		case r := <-s.queue:
			if !r.state.CompareAndSwap(queued, taken) {
				continue
			}
			if s.blocked.Load() {
				r.err = errBlocked
			} else {
				r.dc, r.err = s.ch.PublishWithDeferredConfirm(amqpx.Exchange, amqpx.RoutingKey, true, false, r.msg)
				if r.err != nil {
					r.err = fmt.Errorf("%w: publish: %v", ErrUnavailable, r.err)
				}
			}
			r.done <- struct{}{}
		}
	}
}

var errBlocked = fmt.Errorf("%w: the broker blocks publishers (resource alarm)", ErrUnavailable)

// publish hands msg to the publisher and waits until it was sent, or until
// the deadline, the end of the session or ctx. A publish the publisher never
// took is ErrUnavailable; one it took but did not finish in time may still be
// written: ErrUnknown.
func (s *session) publish(ctx context.Context, msg amqp.Publishing, timer *time.Timer) (*amqp.DeferredConfirmation, error) {
	r := &publishReq{msg: msg, done: make(chan struct{}, 1)}
	select {
	case s.queue <- r:
	case <-timer.C:
		return nil, fmt.Errorf("%w: publishing stalled, the command was not sent", ErrUnavailable)
	case <-s.closed:
		return nil, fmt.Errorf("%w: connection lost", ErrUnavailable)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
	var why string
	select {
	case <-r.done:
		return r.dc, r.err
	case <-timer.C:
		why = "the publish did not finish by the deadline"
	case <-s.closed:
		why = "connection lost during the publish"
	case <-ctx.Done():
		why = ctx.Err().Error()
	}
	if r.state.CompareAndSwap(queued, dropped) {
		return nil, fmt.Errorf("%w: %s; the command was not sent", ErrUnavailable, why)
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknown, why)
}
