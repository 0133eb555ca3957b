package testenv

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// ping sends a Redis PING on c and reads the answer, waiting up to wait.
func ping(c net.Conn, r *bufio.Reader, wait time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

// A cut link drops everything silently: a new connection's dial times out
// (no refusal, no "unreachable") and an open one hears nothing, without
// being closed; once restored, a new dial works and the open connection
// gets its answer. Redis is the server behind the link.
func TestTestHostLinkCutAndRestored(t *testing.T) {
	RequireTestHosts(t)
	srv := servers(t)
	ctx := context.Background()
	h, err := NewTestHost(ctx, map[string]string{"redis": srv.RedisAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat("/run/netns/" + h.Name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s left after Close (%v)", h.Name, err)
		}
	})
	addr := h.Link("redis").Addr

	open, err := h.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	rd := bufio.NewReader(open)
	if got, err := ping(open, rd, 10*time.Second); err != nil || got != "+PONG\r\n" {
		t.Fatalf("PING through the link: %q, %v", got, err)
	}

	if err := h.Cut(ctx, "redis"); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = h.DialContext(dctx, "tcp", addr)
	cancel()
	if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial over the cut link: %v, want it to wait until its deadline", err)
	}
	if got, err := ping(open, rd, 2*time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("PING on the open connection over the cut link: %q, %v, want no answer and no close", got, err)
	}

	if err := h.Restore(ctx, "redis"); err != nil {
		t.Fatal(err)
	}
	c, err := h.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial over the restored link: %v", err)
	}
	defer c.Close()
	if got, err := ping(c, bufio.NewReader(c), 10*time.Second); err != nil || got != "+PONG\r\n" {
		t.Fatalf("PING on a new connection over the restored link: %q, %v", got, err)
	}
	// The open connection's PING sent during the cut is retransmitted and
	// answered; then one more.
	open.SetDeadline(time.Now().Add(30 * time.Second))
	if got, err := rd.ReadString('\n'); err != nil || got != "+PONG\r\n" {
		t.Fatalf("the PING sent during the cut, after the restore: %q, %v", got, err)
	}
	if got, err := ping(open, rd, 10*time.Second); err != nil || got != "+PONG\r\n" {
		t.Fatalf("PING on the open connection after the restore: %q, %v", got, err)
	}
}
