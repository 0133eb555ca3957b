package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// ceilingQueue is the bench's own quorum queue, apart from the service's.
const ceilingQueue = "bench.ceiling"

// shape is what the ceiling's messages and queue look like.
type shape struct {
	queue, exchange, key string // a named exchange is declared, direct, and the queue bound to it by key
	args                 amqp.Table
	consumers            int // echo connections, each with its consuming and its reply channel
	request              func(id string) amqp.Publishing
	reply                func(d *amqp.Delivery) amqp.Publishing
}

// bare is the raw ceiling: a plain quorum queue behind the default exchange,
// one consumer, messages with the properties of a command and no headers.
var bare = shape{queue: ceilingQueue, key: ceilingQueue, args: amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum},
	consumers: 1, request: bareRequest, reply: bareReply}

// serviceShape is the service's own message path without the service: the
// command queue's arguments (delivery limit, at-least-once dead-lettering,
// reject-publish) behind a direct exchange, a consumer per worker, and the
// messages a gateway and a worker send, headers included, for a
// createCustomer with an idempotency key. What it costs the broker beyond
// bare is the price of the message's shape; what bare costs at a lower rate
// beyond bare at -c in flight is the price of the rate.
func serviceShape(workers int) shape {
	return shape{queue: ceilingQueue + ".service", exchange: ceilingQueue + ".service", key: amqpx.RoutingKey,
		args: amqpx.QueueArgs(), consumers: workers, request: serviceRequest, reply: serviceReply}
}

func bareRequest(id string) amqp.Publishing {
	return amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, CorrelationId: id,
		ReplyTo: amqpx.DirectReplyTo, MessageId: id, Type: protocol.CreateCustomer, Timestamp: time.Now(),
		Body: ceilingRequest}
}

func bareReply(d *amqp.Delivery) amqp.Publishing {
	return amqp.Publishing{ContentType: "application/json", CorrelationId: d.CorrelationId, Body: ceilingReply}
}

func serviceRequest(id string) amqp.Publishing {
	key := "bench-1700000000-" + id
	cmd := protocol.Command{CommandID: uuid.NewString(), Method: protocol.CreateCustomer, Partner: 1,
		KeyPrefix: "oo_live_3f9a", RequestID: uuid.NewString(), Timestamp: time.Now(), Params: ceilingRequest,
		IdemKey: idempotency.Key(1, key, false), IdemToken: idempotency.NewToken(),
		IdemFP: idempotency.Fingerprint(protocol.CreateCustomer, ceilingRequest)}
	return cmd.Publishing(id, amqpx.DirectReplyTo)
}

func serviceReply(d *amqp.Delivery) amqp.Publishing {
	return protocol.Result{Status: 201, Body: ceilingReply}.ReplyPublishing(d.CorrelationId)
}

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
	client, stop, err := startCeiling(ctx, amqpURL, bare)
	if err != nil {
		return Row{}, Row{}, err
	}
	defer stop()
	many := measure(func() Row {
		return closedLoop(ctx, keyCeiling, fmt.Sprintf("ceiling c=%d", cfg.c), client.call, cfg.c, cfg.duration)
	})
	many.CPUPerReq = 0 // the gateway and the workers idle meanwhile: no own cost
	one := closedLoop(ctx, keyCeilingSingle, "ceiling 1 in flight", client.call, 1, cfg.singleDuration)
	return many, one, ctx.Err()
}

// shapePhase measures what the broker spends per round trip on the
// service's messages (serviceShape) at cfg.c in flight, and on bare
// messages and on the service's at rate a second (the end-to-end peak),
// open loop: the broker's CPU per message falls as its rate rises, since it
// reads, writes and flushes more messages per wake-up, so these rows split
// the broker's cost per call into rate and shape.
func shapePhase(ctx context.Context, amqpURL string, cfg config, rate float64, measure func(func() Row) Row) ([]Row, error) {
	var rows []Row
	for _, p := range []struct {
		sh        shape
		key, name string
		share     float64 // of rate, in an open loop; 0: closed loop
	}{
		{serviceShape(cfg.workers), keyCeilingService, fmt.Sprintf("service's messages c=%d", cfg.c), 0},
		{bare, keyCeilingAtRate, "ceiling at the e2e rate", 1},
		{serviceShape(cfg.workers), keyCeilingServiceAtRate, "service's messages at the e2e rate", 1},
		// The broker's own tail where the p99 targets are set (phase 3).
		{bare, keyCeilingAt25, "ceiling at 25% of the e2e rate", 0.25},
		{bare, keyCeilingAt50, "ceiling at 50% of the e2e rate", 0.50},
	} {
		client, stop, err := startCeiling(ctx, amqpURL, p.sh)
		if err != nil {
			return nil, err
		}
		r := measure(func() Row {
			if p.share > 0 {
				return openLoop(ctx, p.key, p.name, client.call, p.share*rate, cfg.duration, cfg.maxInFlight)
			}
			return closedLoop(ctx, p.key, p.name, client.call, cfg.c, cfg.duration)
		})
		r.CPUPerReq = 0
		stop()
		rows = append(rows, r)
	}
	return rows, ctx.Err()
}

// startCeiling declares sh's queue (emptied), starts its echo consumers and
// a client, and makes one call through them; stop closes them.
func startCeiling(ctx context.Context, amqpURL string, sh shape) (*echoClient, func(), error) {
	var echoes []*echo
	stop := func() {
		for _, e := range echoes {
			e.close()
		}
	}
	for i := range sh.consumers {
		e, err := startEcho(amqpURL, sh, i == 0)
		if err != nil {
			stop()
			return nil, nil, err
		}
		echoes = append(echoes, e)
	}
	client, err := dialEchoClient(amqpURL, sh)
	if err != nil {
		stop()
		return nil, nil, err
	}
	if label := client.call(ctx); label != "" {
		client.close()
		stop()
		return nil, nil, fmt.Errorf("first echo call: %s", label)
	}
	return client, func() { client.close(); stop() }, nil
}

// echo consumes the ceiling queue and answers every message at once.
type echo struct {
	conn *amqp.Connection
	sh   shape
	done chan struct{}
}

// startEcho starts a consumer of sh's queue; the first declares it.
func startEcho(amqpURL string, sh shape, declare bool) (*echo, error) {
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Heartbeat: 10 * time.Second, Locale: "en_US"})
	if err != nil {
		return nil, fmt.Errorf("echo: dial: %w", err)
	}
	e := &echo{conn: conn, sh: sh, done: make(chan struct{})}
	deliveries, replies, err := e.setUp(declare)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("echo: %w", err)
	}
	go e.serve(deliveries, replies)
	return e, nil
}

func (e *echo) setUp(declare bool) (<-chan amqp.Delivery, *amqp.Channel, error) {
	ch, err := e.conn.Channel()
	if err != nil {
		return nil, nil, err
	}
	if declare {
		if err := declareShape(ch, e.sh); err != nil {
			return nil, nil, err
		}
	}
	if err := ch.Qos(64, 0, false); err != nil {
		return nil, nil, fmt.Errorf("qos: %w", err)
	}
	deliveries, err := ch.Consume(e.sh.queue, "", false, false, false, false, nil)
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

// declareShape declares sh's queue, empty, and its exchange.
func declareShape(ch *amqp.Channel, sh shape) error {
	if _, err := ch.QueueDeclare(sh.queue, true, false, false, false, sh.args); err != nil {
		return fmt.Errorf("declare %s: %w", sh.queue, err)
	}
	if _, err := ch.QueuePurge(sh.queue, false); err != nil {
		return fmt.Errorf("purge %s: %w", sh.queue, err)
	}
	if sh.exchange == "" {
		return nil
	}
	if err := ch.ExchangeDeclare(sh.exchange, amqp.ExchangeDirect, false, true, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", sh.exchange, err)
	}
	return ch.QueueBind(sh.queue, sh.key, sh.exchange, false, nil)
}

// serve replies, then acks, until the connection closes.
func (e *echo) serve(deliveries <-chan amqp.Delivery, replies *amqp.Channel) {
	defer close(e.done)
	for d := range deliveries {
		if err := replies.Publish("", d.ReplyTo, false, false, e.sh.reply(&d)); err != nil {
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
	sh      shape
	conn    *amqp.Connection
	ch      *amqp.Channel
	seq     atomic.Uint64
	mu      sync.Mutex
	pending map[string]chan struct{}
	done    chan struct{}
}

func dialEchoClient(amqpURL string, sh shape) (*echoClient, error) {
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Heartbeat: 10 * time.Second, Locale: "en_US"})
	if err != nil {
		return nil, fmt.Errorf("client: dial: %w", err)
	}
	c := &echoClient{sh: sh, conn: conn, pending: make(map[string]chan struct{}), done: make(chan struct{})}
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
	dc, err := c.ch.PublishWithDeferredConfirm(c.sh.exchange, c.sh.key, true, false, c.sh.request(id))
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
