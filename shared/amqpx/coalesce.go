package amqpx

import (
	"net"
	"sync"
	"time"
)

// maxPending bounds the bytes a coalescing connection accepts ahead of the
// socket; past it Write waits, so the broker's TCP back-pressure still reaches
// the publishers.
const maxPending = 1 << 20

// coalescer is the net.Conn under an amqp091 connection. amqp091 flushes its
// buffer after every publish, ack and heartbeat, one write system call each.
// Here Write only appends to a buffer and one goroutine writes out whatever
// has piled up: the publishes and acks that goroutines made while the last
// write was in the kernel go out in one system call, and the broker reads
// them in one. A write error closes the socket, so the connection's reader
// fails and amqp091 shuts the connection down as on any lost connection.
type coalescer struct {
	net.Conn

	mu      sync.Mutex
	cond    sync.Cond // signalled when the writer took the buffer, or on error
	buf     []byte    // accepted, not yet written
	spare   []byte
	err     error
	closing bool
	kick    chan struct{} // capacity 1: something to write
	done    chan struct{} // the writer ended
}

func newCoalescer(c net.Conn) *coalescer {
	w := &coalescer{Conn: c, kick: make(chan struct{}, 1), done: make(chan struct{})}
	w.cond.L = &w.mu
	go w.loop()
	return w
}

func (w *coalescer) Write(p []byte) (int, error) {
	w.mu.Lock()
	for len(w.buf) >= maxPending && w.err == nil {
		w.cond.Wait()
	}
	if w.err != nil || w.closing {
		err := w.err
		w.mu.Unlock()
		if err == nil {
			err = net.ErrClosed
		}
		return 0, err
	}
	w.buf = append(w.buf, p...)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *coalescer) loop() {
	defer close(w.done)
	for range w.kick {
		w.mu.Lock()
		out := w.buf
		w.buf, w.spare = w.spare[:0], nil
		closing := w.closing
		w.cond.Broadcast()
		w.mu.Unlock()
		var err error
		if len(out) > 0 {
			_, err = w.Conn.Write(out)
		}
		w.mu.Lock()
		w.spare = out[:0]
		if err != nil && w.err == nil {
			w.err = err
			w.Conn.Close()
			w.cond.Broadcast()
		}
		w.mu.Unlock()
		if closing {
			return
		}
	}
}

// Close writes out what is pending (for at most a second) and closes the
// socket.
func (w *coalescer) Close() error {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return nil
	}
	w.closing = true
	w.mu.Unlock()
	w.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	select {
	case w.kick <- struct{}{}:
	default:
	}
	<-w.done
	return w.Conn.Close()
}
