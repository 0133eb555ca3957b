// Package amqpx holds what the gateway and the workers share about RabbitMQ: the
// queue topology of SPEC section 4 and dialing with backoff, so both sides
// (re)declare the same durable exchange, quorum queue and dead-letter queue,
// over a socket that coalesces the connection's writes (coalesce.go).
package amqpx

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/netx"
)

// Names of the topology. Keep them stable: operators bind dashboards and
// alerts to the queue names.
const (
	Exchange      = "oneoffice.commands"
	Queue         = "oneoffice.commands"
	RoutingKey    = "command"
	DeadExchange  = "oneoffice.commands.dlx"
	DeadQueue     = "oneoffice.commands.dlq"
	DirectReplyTo = "amq.rabbitmq.reply-to"
	// DeliveryLimit is how many times the broker hands out one command before it
	// dead-letters it. Transient failures are retried inside the worker and do
	// not count against it; a worker that dies, or stops with commands
	// prefetched, does. 20 leaves room for rolling restarts while a command that
	// kills every worker it reaches still ends in the dead-letter queue.
	DeliveryLimit = 20
)

// QueueArgs are the arguments of the command queue: a quorum queue that
// dead-letters at least once after DeliveryLimit deliveries and refuses
// publishes when full.
func QueueArgs() amqp.Table {
	return amqp.Table{
		amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
		"x-delivery-limit":       int32(DeliveryLimit),
		"x-dead-letter-exchange": DeadExchange,
		"x-dead-letter-strategy": "at-least-once",
		"x-overflow":             "reject-publish",
	}
}

// Declare (re)declares the whole topology; it is idempotent.
func Declare(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(Exchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", Exchange, err)
	}
	if err := ch.ExchangeDeclare(DeadExchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", DeadExchange, err)
	}
	quorum := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
	if _, err := ch.QueueDeclare(DeadQueue, true, false, false, false, quorum); err != nil {
		return fmt.Errorf("declare queue %s: %w", DeadQueue, err)
	}
	if err := ch.QueueBind(DeadQueue, "", DeadExchange, false, nil); err != nil {
		return fmt.Errorf("bind queue %s: %w", DeadQueue, err)
	}
	if _, err := ch.QueueDeclare(Queue, true, false, false, false, QueueArgs()); err != nil {
		return fmt.Errorf("declare queue %s: %w", Queue, err)
	}
	if err := ch.QueueBind(Queue, RoutingKey, Exchange, false, nil); err != nil {
		return fmt.Errorf("bind queue %s: %w", Queue, err)
	}
	return nil
}

// Dial connects to one node of url, which names one broker or, comma-separated,
// the nodes of a cluster (see Nodes), and declares the topology. Each attempt
// tries every node once, in a new random order, so that clients spread over
// the cluster and a lost node is passed over; attempts are retried with
// exponential backoff until one succeeds or ctx ends.
func Dial(ctx context.Context, url string, log *slog.Logger) (*amqp.Connection, error) {
	nodes := Nodes(url)
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = netx.MaxRedialPause
	b.MaxElapsedTime = 0
	return backoff.RetryWithData(func() (*amqp.Connection, error) {
		conn, err := dialAny(shuffled(nodes), log)
		if err != nil {
			log.WarnContext(ctx, "broker unreachable, retrying", "error", err)
		}
		return conn, err
	}, backoff.WithContext(b, ctx))
}

// DefaultHeartbeat is the AMQP heartbeat the clients propose (AMQP_HEARTBEAT);
// the broker's own, if smaller, wins. An idle connection sends a frame at
// least this often, which TCP_USER_TIMEOUT then finds unacknowledged on a
// silent link, and a connection that hears nothing for three of them is
// closed: a dead link is noticed within DefaultHeartbeat +
// TCP_USER_TIMEOUT even when idle, at once under load. Below 5s a broker
// busy with a long garbage collection risks being taken for dead.
const DefaultHeartbeat = 5 * time.Second

// handshakeTimeout bounds the AMQP handshake after the TCP connect; past it
// the attempt is given up and the next one made.
const handshakeTimeout = 10 * time.Second

var (
	heartbeat  atomic.Int64
	brokerDial = netx.DialFunc("broker", 0)
)

func init() { SetHeartbeat(DefaultHeartbeat) }

// SetHeartbeat replaces DefaultHeartbeat, once at start (shared/config's
// ApplyRuntime).
func SetHeartbeat(d time.Duration) { heartbeat.Store(int64(d)) }

func dialOnce(url string) (*amqp.Connection, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Heartbeat: time.Duration(heartbeat.Load()), Locale: "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := brokerDial(context.Background(), network, addr)
			if err != nil {
				return nil, err
			}
			// Heartbeats start after the handshake: until then this
			// deadline holds it (amqp091 clears it once open).
			if err := c.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
				c.Close()
				return nil, err
			}
			return newCoalescer(c), nil
		}})
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer ch.Close()
	if err := Declare(ch); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
