package rpc

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// Modes of a lossProxy.
const (
	forwarding int32 = iota
	swallowing       // what the client sends is read and thrown away
	refusing         // new connections are closed at once
)

// lossProxy forwards to the broker and can lose what the client sends and
// refuse connections, as a node that stops before it kept a publish and
// stays down does: the fault injected.
type lossProxy struct {
	addr  string
	mode  atomic.Int32
	mu    sync.Mutex
	conns []net.Conn
}

func newLossProxy(t *testing.T, target string) *lossProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossProxy{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.mode.Load() == refusing {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(c, up); c.Close() }()
			go p.forward(up, c)
		}
	}()
	return p
}

func (p *lossProxy) forward(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && p.mode.Load() == forwarding {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut closes every connection made through the proxy.
func (p *lossProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// SPEC section 4: a command written but not confirmed by the deadline is
// answered 202 and still completes. Here its only copy is lost with its
// connection, and the broker stays out of reach past the deadline; the
// client publishes it again once it is back, so it is on the queue, once.
func TestACommandAnswered202IsCarriedUntilConfirmed(t *testing.T) {
	vhost := testenv.Vhost(t)
	direct, err := amqp.Dial(vhost)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	ch, err := direct.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := amqpx.Declare(ch); err != nil {
		t.Fatal(err)
	}
	proxy := newLossProxy(t, "127.0.0.1:5672")
	c := startClient(t, "amqp://guest:guest@"+proxy.addr+vhost[strings.LastIndex(vhost, "/"):])

	proxy.mode.Store(swallowing)
	cmd := &protocol.Command{CommandID: "carried-1", Method: "suspendOrder", Partner: 1, RequestID: "req-carried",
		Params: []byte(`{"id":"O1"}`), Timestamp: time.Now()}
	_, err = c.Call(context.Background(), cmd, 300*time.Millisecond)
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("a publish the broker never got: %v, want ErrUnknown (202)", err)
	}
	proxy.mode.Store(refusing)
	proxy.cut()
	time.Sleep(500 * time.Millisecond)
	if q, err := ch.QueueDeclarePassive(amqpx.Queue, true, false, false, false, nil); err != nil || q.Messages != 0 {
		t.Fatalf("before the broker is back: %+v, %v; want the copy lost", q, err)
	}

	proxy.mode.Store(forwarding)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Drain(ctx); err != nil {
		t.Fatalf("the carried command: %v", err)
	}
	d, ok, err := ch.Get(amqpx.Queue, true)
	if err != nil || !ok || d.Headers[protocol.HeaderCommandID] != "carried-1" {
		t.Fatalf("on the queue: %v %v %v; want the carried command", d.Headers, ok, err)
	}
	if _, more, err := ch.Get(amqpx.Queue, true); more || err != nil {
		t.Fatalf("a second copy on the queue (%v, %v)", more, err)
	}
}

// The pauses between two copies of a command: 20 ms doubling up to the
// longest, without jitter.
func TestPausesDoubleUpToTheLongest(t *testing.T) {
	for _, tt := range []struct {
		longest time.Duration
		want    []time.Duration
	}{
		{maxNackPause, []time.Duration{20, 40, 80, 160, 320, 500, 500}},
		{maxCarryPause, []time.Duration{20, 40, 80, 160, 320, 640, 1000, 1000}},
	} {
		b := pauses(tt.longest, 0)
		for i, want := range tt.want {
			if got := b.NextBackOff(); got != want*time.Millisecond {
				t.Fatalf("pause %d up to %v: %v, want %v", i+1, tt.longest, got, want*time.Millisecond)
			}
		}
	}
}
