package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// genuine is a command as the gateway publishes it.
func genuine() Command {
	return Command{Method: CreateCustomer, Partner: 7, RequestID: "rid-1",
		IdemKey: "oo:idem:7:d:customer:ABC", IdemToken: "tok", IdemFP: "fp",
		Params: []byte(`{"id":"ABC","name":"N","admin":{"email":"a@example.com"}}`)}
}

// delivery is what a worker receives of p.
func delivery(p amqp.Publishing) *amqp.Delivery {
	return &amqp.Delivery{Type: p.Type, Headers: p.Headers, Body: p.Body, MessageId: p.MessageId, Timestamp: p.Timestamp}
}

func TestDecodeCommandReadsWhatPublishingWrote(t *testing.T) {
	test := genuine()
	test.Test = true
	for _, c := range []Command{genuine(), test, {Method: GetOrder, Partner: 1, RequestID: "r", Params: []byte(`{"id":"O1"}`)}} {
		got, err := DecodeCommand(delivery(c.Publishing("corr", "reply")))
		if err != nil {
			t.Fatalf("%s: %v", c.Method, err)
		}
		if got.Method != c.Method || got.Partner != c.Partner || got.RequestID != c.RequestID ||
			got.IdemKey != c.IdemKey || got.IdemToken != c.IdemToken || got.IdemFP != c.IdemFP || !bytes.Equal(got.Params, c.Params) ||
			got.Test != c.Test {
			t.Fatalf("decoded %+v, published %+v", got, c)
		}
	}
}

// What a gateway never publishes: each row breaks one thing of a genuine
// message and names the error class the worker's dead-letter reason comes
// from (ErrBadMessage: decode, ErrUntrusted: invalid).
func TestDecodeCommandRefusesMalformedMessages(t *testing.T) {
	for _, c := range []struct {
		name   string
		forge  func(p *amqp.Publishing)
		want   error
		reason string // in the error
	}{
		{"body over MaxBody", func(p *amqp.Publishing) {
			p.Body = append(append([]byte{}, p.Body...), bytes.Repeat([]byte(" "), MaxBody)...)
		}, ErrUntrusted, "over the 65536 bytes"},
		{"unknown method", func(p *amqp.Publishing) { p.Type = "dropTables" }, ErrBadMessage, "unknown method"},
		{"no partner", func(p *amqp.Publishing) { delete(p.Headers, HeaderPartner) }, ErrBadMessage, HeaderPartner},
		{"partner as text", func(p *amqp.Publishing) { p.Headers[HeaderPartner] = "7" }, ErrBadMessage, HeaderPartner},
		{"partner zero", func(p *amqp.Publishing) { p.Headers[HeaderPartner] = int64(0) }, ErrBadMessage, HeaderPartner},
		{"key not text", func(p *amqp.Publishing) { p.Headers[HeaderIdemKey] = int64(1) }, ErrBadMessage, HeaderIdemKey},
		{"fingerprint as bytes", func(p *amqp.Publishing) { p.Headers[HeaderIdemFP] = []byte("fp") }, ErrBadMessage, HeaderIdemFP},
		{"test not a bool", func(p *amqp.Publishing) { p.Headers[HeaderTest] = "true" }, ErrBadMessage, HeaderTest},
		{"request id not text", func(p *amqp.Publishing) { p.Headers[HeaderRequestID] = int32(5) }, ErrBadMessage, HeaderRequestID},
		{"key without token", func(p *amqp.Publishing) { delete(p.Headers, HeaderIdemToken) }, ErrUntrusted, "together"},
		{"key without fingerprint", func(p *amqp.Publishing) { p.Headers[HeaderIdemFP] = "" }, ErrUntrusted, "together"},
		{"token and fingerprint without key", func(p *amqp.Publishing) { delete(p.Headers, HeaderIdemKey) }, ErrUntrusted, "together"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := genuine()
			p := g.Publishing("", "")
			c.forge(&p)
			_, err := DecodeCommand(delivery(p))
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("error %v, want %v naming %q", err, c.want, c.reason)
			}
		})
	}
}

// A body of exactly MaxBody is one a gateway may send.
func TestDecodeCommandTakesABodyOfMaxBody(t *testing.T) {
	g := genuine()
	p := g.Publishing("", "")
	p.Body = append(append([]byte{}, p.Body...), bytes.Repeat([]byte(" "), MaxBody-len(p.Body))...)
	if _, err := DecodeCommand(delivery(p)); err != nil {
		t.Fatalf("body of %d bytes: %v", len(p.Body), err)
	}
}
