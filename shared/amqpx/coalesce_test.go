package amqpx

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// loopback returns both ends of a real TCP connection on 127.0.0.1.
func loopback(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestCoalescerKeepsEveryWriteWholeAndInOrder has 16 goroutines write 500
// numbered records each through one coalescer over TCP; the reader must get
// every record intact, each writer's in order.
func TestCoalescerKeepsEveryWriteWholeAndInOrder(t *testing.T) {
	t.Parallel()
	client, server := loopback(t)
	w := newCoalescer(client)
	const writers, each = 16, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := make([]byte, 64) // writer, sequence, padding: like a small AMQP frame
			for i := range each {
				binary.BigEndian.PutUint32(rec[0:], uint32(g))
				binary.BigEndian.PutUint32(rec[4:], uint32(i))
				if n, err := w.Write(rec); n != len(rec) || err != nil {
					t.Errorf("Write = %d, %v", n, err)
					return
				}
			}
		}()
	}
	next := make([]uint32, writers)
	r := bufio.NewReader(server)
	rec := make([]byte, 64)
	server.SetReadDeadline(time.Now().Add(20 * time.Second))
	for range writers * each {
		if _, err := io.ReadFull(r, rec); err != nil {
			t.Fatalf("read: %v (got %v)", err, next)
		}
		g, i := binary.BigEndian.Uint32(rec[0:]), binary.BigEndian.Uint32(rec[4:])
		if g >= writers || i != next[g] {
			t.Fatalf("record %d of writer %d, want %d", i, g, next[g])
		}
		next[g]++
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(rec); n != 0 || err != io.EOF {
		t.Errorf("after Close: read %d bytes, %v; want EOF", n, err)
	}
}

// slowConn injects the one fault the coalescer exists for: a write that takes
// a while in the kernel. It counts the writes and their sizes.
type slowConn struct {
	net.Conn
	entered chan struct{} // a write reached the socket
	release chan struct{}
	mu      sync.Mutex
	writes  []int
	fail    error
}

var _ net.Conn = (*slowConn)(nil)

func newSlowConn(c net.Conn) *slowConn {
	return &slowConn{Conn: c, entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (c *slowConn) Write(p []byte) (int, error) {
	select {
	case c.entered <- struct{}{}:
	default:
	}
	<-c.release
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, len(p))
	if c.fail != nil {
		return 0, c.fail
	}
	return c.Conn.Write(p)
}

// TestCoalescerSendsWhatPiledUpInOneWrite: while one write is in the kernel,
// 50 more are accepted at once and then go out as a single write.
func TestCoalescerSendsWhatPiledUpInOneWrite(t *testing.T) {
	t.Parallel()
	client, server := loopback(t)
	slow := newSlowConn(client)
	w := newCoalescer(slow)
	w.Write([]byte("first"))
	<-slow.entered // the writer took "first" and waits in the socket
	for range 50 {
		if n, err := w.Write([]byte("0123456789")); n != 10 || err != nil {
			t.Fatalf("Write while the socket is busy = %d, %v", n, err)
		}
	}
	close(slow.release)
	got := make([]byte, 5+500)
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	w.Close()
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if len(slow.writes) != 2 || slow.writes[0] != 5 || slow.writes[1] != 500 {
		t.Errorf("socket writes %v, want [5 500]", slow.writes)
	}
}

// TestCoalescerWriteErrorClosesTheConnection: after the socket refuses a
// write, later Writes fail and the peer sees the connection closed, which is
// how amqp091's reader learns of it.
func TestCoalescerWriteErrorClosesTheConnection(t *testing.T) {
	t.Parallel()
	client, server := loopback(t)
	refused := errors.New("connection reset by peer")
	slow := newSlowConn(client)
	slow.fail = refused
	close(slow.release)
	w := newCoalescer(slow)
	w.Write([]byte("lost"))
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := server.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Errorf("peer read %d, %v; want EOF", n, err)
	}
	if _, err := w.Write([]byte("more")); !errors.Is(err, refused) {
		t.Errorf("Write after the error = %v, want %v", err, refused)
	}
	w.Close()
	if _, err := w.Write([]byte("closed")); err == nil {
		t.Error("Write after Close succeeded")
	}
}

// TestCoalescerHoldsWritersBackPastTheBound: with the socket stuck, Writes are
// accepted up to maxPending and the next one waits until the socket moves.
func TestCoalescerHoldsWritersBackPastTheBound(t *testing.T) {
	t.Parallel()
	client, server := loopback(t)
	slow := newSlowConn(client)
	w := newCoalescer(slow)
	chunk := make([]byte, 64<<10)
	w.Write(chunk)
	<-slow.entered // taken by the writer, which waits in the socket
	for range maxPending / len(chunk) {
		w.Write(chunk)
	}
	blocked := make(chan struct{})
	go func() {
		w.Write(chunk)
		close(blocked)
	}()
	select {
	case <-blocked:
		t.Fatal("a Write past maxPending returned while the socket was stuck")
	case <-time.After(100 * time.Millisecond):
	}
	close(slow.release)
	go io.Copy(io.Discard, server)
	select {
	case <-blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("the held Write did not return once the socket moved")
	}
	w.Close()
}
