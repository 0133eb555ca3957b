package rpc

import (
	"context"
	"errors"
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
// sends, as a broker that stops reading its socket does: the fault injected.
type stallProxy struct {
	addr string
	mu   sync.Mutex
	cond sync.Cond
	held bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{addr: ln.Addr().String()}
	p.cond.L = &p.mu
	t.Cleanup(func() { ln.Close(); p.hold(false) })
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
			go func() { io.Copy(c, up); c.Close() }()
			go p.forward(up, c)
		}
	}()
	return p
}

func (p *stallProxy) forward(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		p.mu.Lock()
		for p.held {
			p.cond.Wait()
		}
		p.mu.Unlock()
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) hold(on bool) {
	p.mu.Lock()
	p.held = on
	p.cond.Broadcast()
	p.mu.Unlock()
}

func startClient(t *testing.T, url string) *Client {
	t.Helper()
	c := New(url, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
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
	// buffer, so that the publisher blocks in a write.
	big := strings.Repeat("x", 2<<20)
	const calls = 8
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			cmd := &protocol.Command{Method: "createCustomer", Partner: 1, RequestID: string(rune('a' + i)),
				Params: []byte(`{"name":"` + big + `"}`), Timestamp: time.Now()}
			_, err := c.Call(context.Background(), cmd, 500*time.Millisecond)
			errs <- err
		}()
	}
	var unknown, unavailable int
	for range calls {
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
	if unknown == 0 || unavailable == 0 {
		t.Fatalf("%d unknown, %d unavailable: want both, a publisher blocked in its write", unknown, unavailable)
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
