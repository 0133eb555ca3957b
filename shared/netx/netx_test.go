package netx

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

// Every connection dialed carries the user time-out and keepalive in force,
// and is counted by dependency and outcome.
func TestDialedConnectionsCarryTheTimeoutsAndAreCounted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	Set(2*time.Second, 7*time.Second)
	defer Set(DefaultDialTimeout, DefaultUserTimeout)

	ok := testutil.ToFloat64(Connects.WithLabelValues("test", "ok"))
	c, err := DialFunc("test", 0)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var user, keepalive, idle int
	var serr error
	raw.Control(func(fd uintptr) {
		if user, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); serr != nil {
			return
		}
		if keepalive, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE); serr != nil {
			return
		}
		idle, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	})
	if serr != nil {
		t.Fatal(serr)
	}
	if user != 7000 || keepalive != 1 || idle != 7 {
		t.Errorf("TCP_USER_TIMEOUT %d ms, SO_KEEPALIVE %d, TCP_KEEPIDLE %d s; want 7000, 1, 7", user, keepalive, idle)
	}
	if got := testutil.ToFloat64(Connects.WithLabelValues("test", "ok")); got != ok+1 {
		t.Errorf("connects ok %v, want %v", got, ok+1)
	}

	ln.Close() // nothing listens there now: refused, counted as failed
	failed := testutil.ToFloat64(Connects.WithLabelValues("test", "failed"))
	if _, err := DialFunc("test", 0)(context.Background(), "tcp", ln.Addr().String()); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if got := testutil.ToFloat64(Connects.WithLabelValues("test", "failed")); got != failed+1 {
		t.Errorf("connects failed %v, want %v", got, failed+1)
	}
}
