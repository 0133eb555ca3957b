package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// stallProxy forwards to the broker and can stop reading what the client
// sends, as a broker that stops reading its socket does, or stop passing on
// what the broker sends (its confirms and replies): the faults injected.
type stallProxy struct {
	addr string
	mu   sync.Mutex
	cond sync.Cond
	held bool // client to broker
	down bool // broker to client
	// parked counts the forwarders from the broker that hold what it sent.
	parked int
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{addr: ln.Addr().String()}
	p.cond.L = &p.mu
	t.Cleanup(func() { ln.Close(); p.hold(false); p.holdDown(false) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); up.Close() })
			go p.forward(c, up, &p.down, &p.parked)
			go p.forward(up, c, &p.held, new(int))
		}
	}()
	return p
}

// forward copies src to dst while held is false. A read waits at most a few
// milliseconds, so that a hold takes effect before more is passed on.
func (p *stallProxy) forward(dst, src net.Conn, held *bool, parked *int) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		p.mu.Lock()
		for *held {
			*parked++
			p.cond.Broadcast()
			p.cond.Wait()
			*parked--
		}
		p.mu.Unlock()
		src.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			continue
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) hold(on bool) { p.set(&p.held, on) }

// holdDown stops (or resumes) passing on what the broker sends; a stop
// returns once nothing more is passed on.
func (p *stallProxy) holdDown(on bool) {
	p.set(&p.down, on)
	p.mu.Lock()
	for on && p.parked == 0 {
		p.cond.Wait()
	}
	p.mu.Unlock()
}

func (p *stallProxy) set(flag *bool, on bool) {
	p.mu.Lock()
	*flag = on
	p.cond.Broadcast()
	p.mu.Unlock()
}

func startClient(t *testing.T, url string, batchMax ...int) *Client {
	t.Helper()
	c := New(url, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
	if len(batchMax) > 0 {
		c.BatchMax = batchMax[0]
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for !c.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

// A broker that stops reading the gateway's socket holds no caller: calls
// whose publish was handed to the socket are ErrUnknown (202), the others
// ErrUnavailable (503), each at its deadline; none waits for the write.
func TestStalledWriteHoldsNoCaller(t *testing.T) {
	vhost := testenv.Vhost(t)
	proxy := newStallProxy(t, "127.0.0.1:5672")
	c := startClient(t, "amqp://guest:guest@"+proxy.addr+vhost[strings.LastIndex(vhost, "/"):])
	proxy.hold(true)

	// Big commands fill the socket's buffers and the connection's write
	// buffer, so that the publisher blocks in a write: each call is answered
	// at its deadline, ErrUnknown if its command was taken (alone or in a
	// batch) and handed to the socket, ErrUnavailable if not, and the first
	// publish always is. The calls made afterwards, while the publisher is
	// still blocked, are never taken: ErrUnavailable, at their deadline.
	big := strings.Repeat("x", 2<<20)
	wave := func(n int, params string) (unknown, unavailable int) {
		errs := make(chan error, n)
		for i := range n {
			go func() {
				cmd := &protocol.Command{Method: "createCustomer", Partner: 1, RequestID: string(rune('a' + i)),
					Params: []byte(params), Timestamp: time.Now()}
				_, err := c.Call(context.Background(), cmd, 500*time.Millisecond)
				errs <- err
			}()
		}
		for range n {
			select {
			case err := <-errs:
				switch {
				case errors.Is(err, ErrUnknown):
					unknown++
				case errors.Is(err, ErrUnavailable):
					unavailable++
				default:
					t.Fatalf("call with the broker not reading: %v, want ErrUnknown or ErrUnavailable", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("a call is held by a blocked write")
			}
		}
		return unknown, unavailable
	}
	if unknown, _ := wave(8, `{"name":"`+big+`"}`); unknown == 0 {
		t.Fatal("no command handed to the socket: the publisher took none")
	}
	if unknown, unavailable := wave(4, `{"id":"X"}`); unknown != 0 || unavailable != 4 {
		t.Fatalf("%d unknown, %d unavailable behind a publisher blocked in its write, want 4 unavailable", unknown, unavailable)
	}

	// Once the broker reads again the client publishes again: no worker
	// answers here, so a confirmed command times out waiting for its reply.
	proxy.hold(false)
	cmd := &protocol.Command{Method: "getCustomer", Partner: 1, RequestID: "after", Params: []byte(`{"id":"X"}`), Timestamp: time.Now()}
	for {
		_, err := c.Call(context.Background(), cmd, 2*time.Second)
		if errors.Is(err, ErrTimeout) {
			break
		}
		if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrUnknown) {
			t.Fatalf("after the stall: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// While maxUnconfirmed messages await their confirm, the calls made
// meanwhile queue, and then go out together in one batch message (one each
// with RPC_BATCH_MAX=1); each call gets its own reply, whether the worker
// answers the batch in one message or (a member given back and run alone)
// in a message of its own.
func TestCallsQueuedBehindUnconfirmedPublishesGoInOneMessage(t *testing.T) {
	t.Run("batched", func(t *testing.T) { callsQueuedBehindUnconfirmedPublishes(t, 0) })
	t.Run("RPC_BATCH_MAX=1", func(t *testing.T) { callsQueuedBehindUnconfirmedPublishes(t, 1) })
}

func callsQueuedBehindUnconfirmedPublishes(t *testing.T, batchMax int) {
	vhost := testenv.Vhost(t)
	proxy := newStallProxy(t, "127.0.0.1:5672")
	c := startClient(t, "amqp://guest:guest@"+proxy.addr+vhost[strings.LastIndex(vhost, "/"):], batchMax)
	seen := respond(t, vhost)
	proxy.holdDown(true) // no confirm reaches the client

	const calls = 12
	got := make(chan string, calls)
	call := func(i int) {
		go func() {
			cmd := &protocol.Command{Method: "getCustomer", Partner: 1, RequestID: fmt.Sprint("r", i),
				Params: []byte(`{"id":"X"}`), Timestamp: time.Now()}
			res, err := c.Call(context.Background(), cmd, time.Minute)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- cmd.RequestID + "=" + string(res.Body)
		}()
	}
	s := c.cur.Load()
	waitFor := func(what string, cond func(msgs, members int) bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
			msgs, members := seen.counts()
			if cond(msgs, members) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d messages of %d calls delivered, %d queued", what, msgs, members, len(s.queue))
			}
		}
	}
	// One call at a time until the window is full: each goes out alone.
	for i := range maxUnconfirmed {
		call(i)
		waitFor("a lone call sent", func(msgs, _ int) bool { return msgs == i+1 })
	}
	// The rest queue behind it.
	for i := maxUnconfirmed; i < calls; i++ {
		call(i)
	}
	waitFor("the other calls queued", func(msgs, members int) bool {
		return msgs == maxUnconfirmed && members+len(s.queue) == calls
	})
	proxy.holdDown(false)
	want := map[string]bool{}
	for i := range calls {
		want[fmt.Sprintf("r%d=r%d", i, i)] = true
	}
	for range calls {
		select {
		case r := <-got:
			if !want[r] {
				t.Errorf("a call answered %q", r)
			}
			delete(want, r)
		case <-time.After(time.Minute):
			t.Fatal("a call got no answer")
		}
	}
	wantMsgs := maxUnconfirmed + 1 // the queued ones in one more message
	if batchMax == 1 {
		wantMsgs = calls
	}
	if msgs, members := seen.counts(); msgs != wantMsgs || members != calls {
		t.Errorf("%d calls in %d messages, want %d", members, msgs, wantMsgs)
	}
}

// responder stands in for the workers: it answers each command with its
// request id, a batch's members in one reply but its first, alone.
type responder struct {
	mu            sync.Mutex
	msgs, members int
}

func (r *responder) counts() (msgs, members int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs, r.members
}

func respond(t *testing.T, url string) *responder {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := amqpx.Declare(ch); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume(amqpx.Queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &responder{}
	go func() {
		for d := range ds {
			members := []amqp.Delivery{d}
			if d.Type == protocol.BatchType {
				if members, err = protocol.DecodeBatch(&d); err != nil {
					t.Errorf("a batch that does not decode: %v", err)
					continue
				}
			}
			r.mu.Lock()
			r.msgs, r.members = r.msgs+1, r.members+len(members)
			r.mu.Unlock()
			var replies []protocol.Reply
			for _, m := range members {
				cmd, err := protocol.DecodeCommand(&m)
				if err != nil {
					t.Errorf("member: %v", err)
					continue
				}
				replies = append(replies, protocol.Reply{CorrelationID: m.CorrelationId,
					Result: protocol.Result{Status: 200, Body: []byte(cmd.RequestID)}})
			}
			first := replies[0]
			ch.Publish("", d.ReplyTo, false, false, first.ReplyPublishing(first.CorrelationID))
			if len(replies) > 1 {
				ch.Publish("", d.ReplyTo, false, false, protocol.EncodeReplies(replies[1:]))
			}
		}
	}()
	return r
}

// BenchmarkCall is one call's round trip against the real broker, a
// responder in the test standing in for the workers.
func BenchmarkCall(b *testing.B) {
	vhost := testenv.Vhost(b)
	conn, err := amqp.Dial(vhost)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := amqpx.Declare(ch); err != nil {
		b.Fatal(err)
	}
	ds, err := ch.Consume(amqpx.Queue, "", true, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for d := range ds {
			res := protocol.Result{Status: 200, Body: []byte(`{}`)}
			ch.Publish("", d.ReplyTo, false, false, res.ReplyPublishing(d.CorrelationId))
		}
	}()
	c := New(vhost, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	for !c.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	cmd := &protocol.Command{Method: "getCustomer", Partner: 1, RequestID: "bench", Params: []byte(`{"id":"X"}`), Timestamp: time.Now()}
	b.ResetTimer()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Call(context.Background(), cmd, 5*time.Second); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
