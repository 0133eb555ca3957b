// Package netx holds how the gateway and the workers open TCP connections to
// PostgreSQL, RabbitMQ and Redis, so that a link that goes silent (packets
// dropped, no RST and no FIN) is noticed within seconds and a link that
// comes back is used again within seconds. The values are read once at
// start (shared/config: DIAL_TIMEOUT, TCP_USER_TIMEOUT, AMQP_HEARTBEAT) and
// documented in README, Configuration.
package netx

import (
	"context"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Defaults, and why.
const (
	// DefaultDialTimeout bounds one TCP connect. A server that answers at
	// all answers a SYN within milliseconds on a LAN; a SYN dropped on a
	// cut link is sent again after 1s and 3s, so a 3s dial takes two of
	// them, and the next attempt (after a re-dial pause of at most
	// MaxRedialPause) meets a healed link within 5s of the heal. Without
	// it a dial waits for the kernel's own SYN schedule, over two minutes.
	DefaultDialTimeout = 3 * time.Second
	// DefaultUserTimeout is how long data sent may stay unacknowledged
	// before the kernel drops the connection (TCP_USER_TIMEOUT), and how
	// long an idle connection waits before its first keepalive probe. A
	// peer that is alive acknowledges within a round trip whatever its
	// load (the kernel acknowledges, not the program); 5s is many round
	// trips of any network these processes run on and short against
	// RPC_TIMEOUT. Without it a silent link holds a connection for the
	// kernel's fifteen retransmissions, about 15 minutes.
	DefaultUserTimeout = 5 * time.Second
	// keepAliveInterval and keepAliveProbes: an idle connection sends a
	// probe every second after DefaultUserTimeout of silence; the user
	// timeout ends it at the first unanswered one.
	keepAliveInterval = time.Second
	keepAliveProbes   = 3
	// MaxRedialPause is the longest pause between two attempts to reach a
	// server that was lost: with DefaultDialTimeout, a healed link is used
	// within about 4s.
	MaxRedialPause = time.Second
)

var (
	dialTimeout atomic.Int64
	userTimeout atomic.Int64
)

func init() { Set(DefaultDialTimeout, DefaultUserTimeout) }

// Set replaces the defaults, once at start (shared/config's ApplyRuntime).
func Set(dial, user time.Duration) {
	dialTimeout.Store(int64(dial))
	userTimeout.Store(int64(user))
}

// DialTimeout is the TCP connect time-out in force.
func DialTimeout() time.Duration { return time.Duration(dialTimeout.Load()) }

// UserTimeout is the TCP_USER_TIMEOUT and keepalive idle time in force.
func UserTimeout() time.Duration { return time.Duration(userTimeout.Load()) }

// Dialer is a dialer with the time-outs in force: connect time-out,
// keepalive and, on Linux, TCP_USER_TIMEOUT on every socket it makes.
func Dialer() *net.Dialer {
	user := UserTimeout()
	return &net.Dialer{
		Timeout: DialTimeout(),
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: user,
			Interval: keepAliveInterval, Count: keepAliveProbes},
		Control: func(network, _ string, c syscall.RawConn) error {
			if network != "tcp" && network != "tcp4" && network != "tcp6" {
				return nil // a Unix socket has no TCP time-outs
			}
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(user.Milliseconds()))
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
}

// Connects counts the connections opened to each dependency by outcome:
// past the first few, each is a reconnect, and failed ones are a
// dependency out of reach. shared/admin registers it on every process.
var Connects = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "oneoffice_dependency_connects_total",
	Help: "TCP connections opened to a dependency (database, redis, broker), by outcome (ok, failed); after start, each is a reconnect.",
}, []string{"dependency", "outcome"})

// DialFunc dials dependency (database, redis, broker) with Dialer, its
// connect time-out replaced by timeout when that is not 0, and counts the
// outcome in Connects.
func DialFunc(dependency string, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	ok, failed := Connects.WithLabelValues(dependency, "ok"), Connects.WithLabelValues(dependency, "failed")
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := Dialer()
		if timeout > 0 {
			d.Timeout = timeout
		}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			failed.Inc()
			return nil, err
		}
		ok.Inc()
		return c, nil
	}
}
