package rpc

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/protocol"
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

// maxUnconfirmed is how many messages the publisher has out unconfirmed
// before it waits for the oldest's confirm: meanwhile the commands queue,
// and go out together in the next message. One batched more and cost less
// than two at the same tails (docs/PERFORMANCE.md, "Transport batching").
const maxUnconfirmed = 1

// publisher makes the session's publishes, one message at a time as amqp091
// does on a channel anyway. While maxUnconfirmed messages await their
// confirm, the commands queue; then those queued go out together in one
// batch message (protocol.EncodeBatch), up to most (Client.BatchMax), so that
// under load the broker stores, confirms, delivers and settles one message
// for several commands. A lone command is never held back waiting for
// company. The members of a batch share its confirm: a nack or a lost
// connection makes each caller publish its own command again. A publish
// blocked in a socket write (the broker has stopped reading), or a broker
// that confirms nothing, blocks this goroutine only; the callers wait for it
// with their deadline, and a command it never took was not sent. It ends
// with the session.
func (s *session) publisher(m *Metrics, most int) {
	batch := make([]*publishReq, 0, protocol.MaxBatch)
	msgs := make([]amqp.Publishing, 0, protocol.MaxBatch)
	var window []*amqp.DeferredConfirmation // unconfirmed, oldest first
	for {
		for len(window) > 0 && isDone(window[0]) {
			window = window[1:]
		}
		queue, oldest := s.queue, (<-chan struct{})(nil)
		if len(window) >= maxUnconfirmed {
			queue, oldest = nil, window[0].Done()
		}
		select {
		case <-s.closed:
			return
		case <-oldest:
		case r := <-queue:
			batch = append(batch[:0], r)
		more:
			for len(batch) < most {
				select {
				case r := <-s.queue:
					batch = append(batch, r)
				default:
					break more
				}
			}
			batch = takeQueued(batch)
			if len(batch) == 0 {
				continue
			}
			msgs = msgs[:0]
			for _, r := range batch {
				msgs = append(msgs, r.msg)
			}
			if dc := s.send(batch, msgs, m); dc != nil {
				window = append(window, dc)
			}
			clear(msgs)
		}
	}
}

func isDone(dc *amqp.DeferredConfirmation) bool {
	select {
	case <-dc.Done():
		return true
	default:
		return false
	}
}

// takeQueued keeps the requests whose callers have not given up, now taken.
func takeQueued(batch []*publishReq) []*publishReq {
	kept := batch[:0]
	for _, r := range batch {
		if r.state.CompareAndSwap(queued, taken) {
			kept = append(kept, r)
		}
	}
	clear(batch[len(kept):])
	return kept
}

// send publishes the taken requests, in one message when there are several,
// and hands each its confirm or its error.
func (s *session) send(batch []*publishReq, msgs []amqp.Publishing, m *Metrics) *amqp.DeferredConfirmation {
	var dc *amqp.DeferredConfirmation
	var err error
	pub := msgs[0]
	switch {
	case s.blocked.Load():
		err = errBlocked
	case len(batch) > 1:
		pub, err = protocol.EncodeBatch(msgs) // fails only for a command no gateway makes
	}
	if err == nil {
		dc, err = s.ch.PublishWithDeferredConfirm(amqpx.Exchange, amqpx.RoutingKey, true, false, pub)
	}
	if err != nil && err != errBlocked { // nothing was sent
		err = fmt.Errorf("%w: publish: %v", ErrUnavailable, err)
	}
	if err == nil {
		m.batch.Observe(float64(len(batch)))
	}
	for _, r := range batch {
		r.dc, r.err = dc, err
		r.done <- struct{}{}
	}
	return dc
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
