package protocol

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Header names carried by a command message (SPEC section 4).
const (
	HeaderPartner     = "partner"
	HeaderRequestID   = "request_id"
	HeaderTraceparent = "traceparent"
	HeaderIdemKey     = "idem_key"
	HeaderIdemToken   = "idem_token"
	HeaderIdemFP      = "idem_fp"
	HeaderStatus      = "status"
)

// Command is one API call on its way to a worker. Params is the canonical
// encoding of the validated params.
type Command struct {
	Method      string
	Partner     int64
	RequestID   string
	Traceparent string
	// IdemKey is the Redis key of the idempotency record, "" when the call has
	// none; IdemToken is the lock holder's token and IdemFP the fingerprint.
	IdemKey   string
	IdemToken string
	IdemFP    string
	Params    []byte
	Timestamp time.Time
}

// Publishing encodes the command as a persistent AMQP message.
func (c *Command) Publishing(correlationID, replyTo string) amqp.Publishing {
	h := amqp.Table{
		HeaderPartner:   c.Partner,
		HeaderRequestID: c.RequestID,
	}
	if c.Traceparent != "" {
		h[HeaderTraceparent] = c.Traceparent
	}
	if c.IdemKey != "" {
		h[HeaderIdemKey] = c.IdemKey
		h[HeaderIdemToken] = c.IdemToken
		h[HeaderIdemFP] = c.IdemFP
	}
	return amqp.Publishing{
		ContentType:   "application/json",
		DeliveryMode:  amqp.Persistent,
		CorrelationId: correlationID,
		ReplyTo:       replyTo,
		MessageId:     cmp.Or(c.IdemKey, c.RequestID),
		Type:          c.Method,
		Timestamp:     c.Timestamp,
		Headers:       h,
		Body:          c.Params,
	}
}

// ErrBadMessage marks a message that cannot be decoded into a command.
var ErrBadMessage = errors.New("bad command message")

// DecodeCommand reads a command from a delivery, trusting nothing: every header
// is type-checked and the method must be known. The params are not validated here.
func DecodeCommand(d *amqp.Delivery) (Command, error) {
	c := Command{Method: d.Type, Params: d.Body, Timestamp: d.Timestamp}
	if !Known(c.Method) {
		return c, fmt.Errorf("%w: unknown method %q", ErrBadMessage, c.Method)
	}
	partner, ok := d.Headers[HeaderPartner].(int64)
	if !ok || partner <= 0 {
		return c, fmt.Errorf("%w: header %s missing or not an int64", ErrBadMessage, HeaderPartner)
	}
	c.Partner = partner
	c.RequestID, _ = d.Headers[HeaderRequestID].(string)
	c.Traceparent, _ = d.Headers[HeaderTraceparent].(string)
	c.IdemKey, _ = d.Headers[HeaderIdemKey].(string)
	c.IdemToken, _ = d.Headers[HeaderIdemToken].(string)
	c.IdemFP, _ = d.Headers[HeaderIdemFP].(string)
	return c, nil
}

// Result is a worker's answer: the HTTP status and the exact response body.
type Result struct {
	Status int
	Body   []byte
}

// ReplyPublishing encodes a result as a reply message.
func (r Result) ReplyPublishing(correlationID string) amqp.Publishing {
	return amqp.Publishing{
		ContentType:   "application/json",
		CorrelationId: correlationID,
		Headers:       amqp.Table{HeaderStatus: int32(r.Status)},
		Body:          r.Body,
	}
}

// DecodeReply reads a result from a reply delivery.
func DecodeReply(d *amqp.Delivery) (Result, error) {
	var status int
	switch v := d.Headers[HeaderStatus].(type) {
	case int32:
		status = int(v)
	case int64:
		status = int(v)
	case string:
		status, _ = strconv.Atoi(v)
	}
	if status < 200 || status > 599 {
		return Result{}, fmt.Errorf("%w: reply status %v", ErrBadMessage, d.Headers[HeaderStatus])
	}
	return Result{Status: status, Body: d.Body}, nil
}
