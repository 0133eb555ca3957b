package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// ceilingQueue is the bench's own quorum queue, apart from the service's.
const ceilingQueue = "bench.ceiling"

// Bodies of the size of a createCustomer command and of its reply.
var (
	ceilingRequest = createCustomerCall("bench-1700000000-123456", 123456)
	ceilingReply   = []byte(`{"id":123456,"remoteId":"bench-1700000000-123456","name":"Bench Customer 123456","partner":1,"createdAt":1700000000,"isActive":true,"admin":{"email":"admin123456@bench.example.com"}}`)
)

// ceilingPhase measures the broker alone with the service's message path: a
// persistent, mandatory publish with confirm to a quorum queue, consumed with
// manual ack and prefetch 64 by an echo consumer that replies through Direct
// Reply-to. It returns the throughput at cfg.c in flight, with the CPU that
// measure attaches to it, and a single caller's latency.
func ceilingPhase(ctx context.Context, amqpURL string, cfg config, measure func(func() Row) Row) (Row, Row, error) {
	echo, err := startEcho(amqpURL)
	if err != nil {
		return Row{}, Row{}, err
	}
	defer echo.close()
	client, err := dialEchoClient(amqpURL)
	if err != nil {
		return Row{}, Row{}, err
	}
	defer client.close()
	if label := client.call(ctx); label != "" {
		return Row{}, Row{}, fmt.Errorf("first echo call: %s", label)
	}
	many := measure(func() Row {
		return closedLoop(ctx, keyCeiling, fmt.Sprintf("ceiling c=%d", cfg.c), client.call, cfg.c, cfg.duration)
	})
	many.CPUPerReq = 0 // the gateway and the workers idle meanwhile: no own cost
	one := closedLoop(ctx, keyCeilingSingle, "ceiling 1 in flight", client.call, 1, cfg.singleDuration)
	return many, one, ctx.Err()
}

// echo consumes the ceiling queue and answers every message at once.
type echo struct {
	conn *amqp.Connection
	done chan struct{}
}

func startEcho(amqpURL string) (*echo, error) {
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Heartbeat: 10 * time.Second, Locale: "en_US"})
	if err != nil {
		return nil, fmt.Errorf("echo: dial: %w", err)
	}
	e := &echo{conn: conn, done: make(chan struct{})}
	deliveries, replies, err := e.setUp()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("echo: %w", err)
	}
	go e.serve(deliveries, replies)
	return e, nil
}

func (e *echo) setUp() (<-chan amqp.Delivery, *amqp.Channel, error) {
	ch, err := e.conn.Channel()
	if err != nil {
		return nil, nil, err
	}
	args := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
	if _, err := ch.QueueDeclare(ceilingQueue, true, false, false, false, args); err != nil {
		return nil, nil, fmt.Errorf("declare %s: %w", ceilingQueue, err)
	}
	if _, err := ch.QueuePurge(ceilingQueue, false); err != nil {
		return nil, nil, fmt.Errorf("purge %s: %w", ceilingQueue, err)
	}
	if err := ch.Qos(64, 0, false); err != nil {
		return nil, nil, fmt.Errorf("qos: %w", err)
	}
	deliveries, err := ch.Consume(ceilingQueue, "bench-echo", false, false, false, false, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("consume: %w", err)
	}
	// Replies go out on their own channel, as the worker's do.
	replies, err := e.conn.Channel()
	if err != nil {
		return nil, nil, err
	}
	return deliveries, replies, nil
}

// serve replies, then acks, until the connection closes.
func (e *echo) serve(deliveries <-chan amqp.Delivery, replies *amqp.Channel) {
	defer close(e.done)
	for d := range deliveries {
		msg := amqp.Publishing{ContentType: "application/json", CorrelationId: d.CorrelationId, Body: ceilingReply}
		if err := replies.Publish("", d.ReplyTo, false, false, msg); err != nil {
			return
		}
		if err := d.Ack(false); err != nil {
			return
		}
	}
}

func (e *echo) close() {
	e.conn.Close()
	<-e.done
}

// echoClient is a minimal copy of the gateway's RPC client: one channel in
// confirm mode, Direct Reply-to, replies matched by correlation id.
type echoClient struct {
	conn    *amqp.Connection
	ch      *amqp.Channel
	seq     atomic.Uint64
	mu      sync.Mutex
	pending map[string]chan struct{}
	done    chan struct{}
}

func dialEchoClient(amqpURL string) (*echoClient, error) {
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Heartbeat: 10 * time.Second, Locale: "en_US"})
	if err != nil {
		return nil, fmt.Errorf("client: dial: %w", err)
	}
	c := &echoClient{conn: conn, pending: make(map[string]chan struct{}), done: make(chan struct{})}
	replies, err := c.setUp()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("client: %w", err)
	}
	go c.dispatch(replies)
	return c, nil
}

func (c *echoClient) setUp() (<-chan amqp.Delivery, error) {
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("confirm mode: %w", err)
	}
	replies, err := ch.Consume(amqpx.DirectReplyTo, "", true, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume replies: %w", err)
	}
	c.ch = ch
	return replies, nil
}

func (c *echoClient) dispatch(replies <-chan amqp.Delivery) {
	defer close(c.done)
	for d := range replies {
		c.mu.Lock()
		rc, ok := c.pending[d.CorrelationId]
		delete(c.pending, d.CorrelationId)
		c.mu.Unlock()
		if ok {
			rc <- struct{}{}
		}
	}
}

// call publishes one request and waits for its confirm and its reply.
func (c *echoClient) call(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	id := strconv.FormatUint(c.seq.Add(1), 36)
	rc := make(chan struct{}, 1)
	c.mu.Lock()
	c.pending[id] = rc
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	dc, err := c.ch.PublishWithDeferredConfirm("", ceilingQueue, true, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, CorrelationId: id,
		ReplyTo: amqpx.DirectReplyTo, MessageId: id, Type: protocol.CreateCustomer, Timestamp: time.Now(),
		Body: ceilingRequest,
	})
	if err != nil {
		return "publish"
	}
	select {
	case <-dc.Done():
		if !dc.Acked() {
			return "nack"
		}
	case <-ctx.Done():
		return timeoutLabel(ctx)
	}
	select {
	case <-rc:
		return ""
	case <-ctx.Done():
		return timeoutLabel(ctx)
	}
}

func timeoutLabel(ctx context.Context) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "timeout"
	}
	return "cancelled"
}

func (c *echoClient) close() {
	c.conn.Close()
	<-c.done
}
