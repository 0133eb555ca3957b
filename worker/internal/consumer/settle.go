package consumer

import (
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

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

// ack settles a command that finished: its ack is sent now or held.
func (s *settler) ack(tag uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	s.done[tag] = true
	s.advance()
	switch {
	case s.held == 0:
	case s.running == 0 || s.held >= s.maxHeld:
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
