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
	HeaderPartner   = "partner"
	HeaderRequestID = "request_id"
	HeaderIdemKey   = "idem_key"
	HeaderIdemToken = "idem_token"
	HeaderIdemFP    = "idem_fp"
	HeaderStatus    = "status"
	HeaderCommandID = "command_id"
	HeaderReplayed  = "replayed"
	// HeaderTest is true on a command of a test (sandbox) key; absent on a
	// live one, as on every command of an older gateway.
	HeaderTest = "test"
	// HeaderKeyPrefix names the call's key by its prefix (never the key), for
	// the audit trail of what a partner changes from the console.
	HeaderKeyPrefix = "key_prefix"
)

// MaxCommandID bounds a command id read off the queue: the gateway's are UUIDs.
const MaxCommandID = 128

// Command is one API call on its way to a worker. Params is the canonical
// encoding of the validated params.
type Command struct {
	// CommandID identifies this call, one per call however it is retried or
	// redelivered: the worker's ledger records the command under it. The
	// gateway assigns it; a message without one (queued by an older gateway)
	// gets one from the worker and is not recognised when redelivered.
	CommandID string
	Method    string
	// Def is the registered method Method names, set by DecodeCommand (and
	// by the gateway that builds the command): a delivery looks its method
	// up once. It never travels on the wire.
	Def     *Method
	Partner int64
	// Test: the call's key is a test key, Partner its test partner; such a
	// command makes no tenant storage (SPEC section 6).
	Test bool
	// KeyPrefix is the prefix of the call's key (auth.Prefix), "" from an
	// older gateway.
	KeyPrefix string
	RequestID string
	// TraceID is the trace the command runs in, set by the worker from the
	// trace context its message carries (traceparent, written and read by
	// the OpenTelemetry propagator); "" without one. It never travels on
	// the wire as such.
	TraceID string
	// IdemKey is the Redis key of the idempotency record, "" when the call has
	// none; IdemToken is the lock holder's token and IdemFP the fingerprint.
	IdemKey   string
	IdemToken string
	IdemFP    string
	Params    []byte
	Timestamp time.Time
	// Decoded holds Params decoded and validated, once a reader of the
	// message has done that (the worker does for a keyed command, to check
	// its fingerprint); nil until then. It never travels on the wire.
	Decoded Params
}

// Publishing encodes the command as a persistent AMQP message.
func (c *Command) Publishing(correlationID, replyTo string) amqp.Publishing {
	h := amqp.Table{
		HeaderPartner:   c.Partner,
		HeaderRequestID: c.RequestID,
	}
	if c.CommandID != "" {
		h[HeaderCommandID] = c.CommandID
	}
	if c.Test {
		h[HeaderTest] = true
	}
	if c.KeyPrefix != "" {
		h[HeaderKeyPrefix] = c.KeyPrefix
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

// MaxBody is the largest command body, in bytes: the gateway's request body
// limit (SPEC section 1, 413 beyond). A command carries the canonical params
// of a call that fit in it, whose fields are bounded far below it, so a larger
// body did not come from a gateway and is not even decoded.
const MaxBody = 64 << 10

var (
	// ErrBadMessage marks a message that cannot be decoded into a command.
	ErrBadMessage = errors.New("bad command message")
	// ErrUntrusted marks a message that decodes but does not hold together:
	// a body larger than any call, idempotency headers in part, or (checked
	// by the worker against the decoded params) a key or fingerprint that is
	// not the call's. No gateway sends one, so it is refused, never run.
	ErrUntrusted = errors.New("untrusted command message")
)

// DecodeCommand reads a command from a delivery, trusting nothing: the body is
// bounded, every header is type-checked, the method must be known, and the
// idempotency headers come all together or not at all. The params are not
// validated here, nor the key and fingerprint against them: that needs the
// idempotency rules, which the worker applies next.
func DecodeCommand(d *amqp.Delivery) (Command, error) {
	c := Command{Method: d.Type, Timestamp: d.Timestamp}
	if c.Method == BatchType { // a batch that does not decode, or one inside a batch
		why := errors.New("a batch inside a batch")
		if _, err := DecodeBatch(d); err != nil {
			why = err
		}
		return c, fmt.Errorf("%w: batch: %w", ErrBadMessage, why)
	}
	if len(d.Body) > MaxBody {
		return c, fmt.Errorf("%w: body of %d bytes, over the %d bytes of any call", ErrUntrusted, len(d.Body), MaxBody)
	}
	c.Params = d.Body
	def, ok := Lookup(c.Method)
	if !ok {
		return c, fmt.Errorf("%w: unknown method %q", ErrBadMessage, c.Method)
	}
	c.Def = def
	partner, ok := d.Headers[HeaderPartner].(int64)
	if !ok || partner <= 0 {
		return c, fmt.Errorf("%w: header %s missing or not an int64", ErrBadMessage, HeaderPartner)
	}
	c.Partner = partner
	if v, ok := d.Headers[HeaderTest]; ok {
		if c.Test, ok = v.(bool); !ok {
			return c, fmt.Errorf("%w: header %s not a bool", ErrBadMessage, HeaderTest)
		}
	}
	var errs []error
	for _, h := range []struct {
		name string
		to   *string
	}{
		{HeaderRequestID, &c.RequestID}, {HeaderCommandID, &c.CommandID}, {HeaderKeyPrefix, &c.KeyPrefix},
		{HeaderIdemKey, &c.IdemKey}, {HeaderIdemToken, &c.IdemToken}, {HeaderIdemFP, &c.IdemFP},
	} {
		errs = append(errs, stringHeader(d.Headers, h.name, h.to))
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if len(c.CommandID) > MaxCommandID {
		return c, fmt.Errorf("%w: header %s of %d bytes, over %d", ErrUntrusted, HeaderCommandID, len(c.CommandID), MaxCommandID)
	}
	if some, all := c.IdemKey != "" || c.IdemToken != "" || c.IdemFP != "",
		c.IdemKey != "" && c.IdemToken != "" && c.IdemFP != ""; some && !all {
		return c, fmt.Errorf("%w: headers %s, %s and %s come together or not at all", ErrUntrusted,
			HeaderIdemKey, HeaderIdemToken, HeaderIdemFP)
	}
	return c, nil
}

// stringHeader reads an optional text header into to. A header of another
// type is refused rather than read as absent: dropping an idempotency key
// would run a keyed call as an un-keyed one.
func stringHeader(h amqp.Table, name string, to *string) error {
	v, present := h[name]
	if !present {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("%w: header %s is a %T, not a string", ErrBadMessage, name, v)
	}
	*to = s
	return nil
}

// Result is a worker's answer: the HTTP status and the exact response body.
type Result struct {
	Status int
	Body   []byte
	// Replayed reports an answer taken from an earlier call's record under
	// the same idempotency key (the worker's ledger, when Redis had lost the
	// record): the gateway sends it with Idempotent-Replayed: true.
	Replayed bool
	// Ended lists idempotency records (Redis keys) that the command ended:
	// deleting a resource ends the derived key that created it. The worker
	// deletes them after the commit; they never travel.
	Ended []string
}

// ReplyPublishing encodes a result as a reply message.
func (r Result) ReplyPublishing(correlationID string) amqp.Publishing {
	h := amqp.Table{HeaderStatus: int32(r.Status)}
	if r.Replayed {
		h[HeaderReplayed] = true
	}
	return amqp.Publishing{
		ContentType:   "application/json",
		CorrelationId: correlationID,
		Headers:       h,
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
	replayed, _ := d.Headers[HeaderReplayed].(bool)
	return Result{Status: status, Body: d.Body, Replayed: replayed}, nil
}
