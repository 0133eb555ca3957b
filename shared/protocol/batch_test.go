package protocol

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func batchMembers() []Command {
	at := time.Unix(1_800_000_000, 0)
	return []Command{
		{CommandID: "c-1", Method: CreateCustomer, Partner: 7, RequestID: "r-1", KeyPrefix: "ok_live_ab",
			IdemKey: "idem:7:k-1", IdemToken: "tok", IdemFP: "fp", Params: []byte(`{"id":"A"}`), Timestamp: at},
		{CommandID: "c-2", Method: GetCustomer, Partner: 7, Test: true, RequestID: "r-2", Params: []byte(`{"id":"B"}`)},
		// not JSON: a batch carries a body as it is
		{CommandID: "c-3", Method: CancelOrder, Partner: 9, RequestID: "r-3", Params: []byte("\x00\xff\"}")},
	}
}

// Every member comes out of a batch as the delivery its own message would
// have been: DecodeCommand reads the same command off both.
func TestBatchMembersDecodeAsTheirOwnMessages(t *testing.T) {
	cmds := batchMembers()
	pubs := make([]amqp.Publishing, len(cmds))
	for i := range cmds {
		pubs[i] = cmds[i].Publishing(fmt.Sprint("call-", i), "reply-here")
		pubs[i].Headers["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	}
	pub, err := EncodeBatch(pubs)
	if err != nil {
		t.Fatal(err)
	}
	if pub.Type != BatchType || pub.DeliveryMode != amqp.Persistent || pub.ReplyTo != "reply-here" {
		t.Fatalf("batch message %+v", pub)
	}
	d := amqp.Delivery{ContentType: pub.ContentType, DeliveryMode: pub.DeliveryMode, Type: pub.Type, Body: pub.Body,
		ReplyTo: pub.ReplyTo, DeliveryTag: 42, Redelivered: true}
	members, err := DecodeBatch(&d)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != len(cmds) {
		t.Fatalf("%d members, want %d", len(members), len(cmds))
	}
	if got := BatchCorrelationIDs(pub.Body); !slices.Equal(got, []string{"call-0", "call-1", "call-2"}) {
		t.Errorf("correlation ids %v", got)
	}
	for i, md := range members {
		alone := delivered(pubs[i])
		alone.DeliveryTag, alone.Redelivered = 42, true
		if !reflect.DeepEqual(md, alone) {
			t.Errorf("member %d\n got %+v\nwant %+v", i, md, alone)
		}
		got, err := DecodeCommand(&md)
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		want := cmds[i]
		want.Def, _ = Lookup(want.Method)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("member %d decodes to\n %+v\nwant %+v", i, got, want)
		}
		if again := MemberPublishing(&md); !reflect.DeepEqual(again, pubs[i]) {
			t.Errorf("member %d given back as\n %+v\nwant %+v", i, again, pubs[i])
		}
	}
}

// delivered is pub as the broker delivers it, every property kept.
func delivered(pub amqp.Publishing) amqp.Delivery {
	return amqp.Delivery{ContentType: pub.ContentType, DeliveryMode: pub.DeliveryMode, CorrelationId: pub.CorrelationId,
		ReplyTo: pub.ReplyTo, MessageId: pub.MessageId, Type: pub.Type, Timestamp: pub.Timestamp,
		Headers: pub.Headers, Body: pub.Body}
}

func TestEncodeBatchRefuses(t *testing.T) {
	pubs := func(n int) []amqp.Publishing {
		ps := make([]amqp.Publishing, n)
		for i := range ps {
			ps[i] = batchMembers()[1].Publishing("c", "r")
		}
		return ps
	}
	other := pubs(2)
	other[1].ReplyTo = "elsewhere"
	float := pubs(2)
	float[0].Headers["x"] = 1.5
	for name, ps := range map[string][]amqp.Publishing{
		"one": pubs(1), "too many": pubs(MaxBatch + 1), "two reply addresses": other, "a float header": float,
	} {
		if _, err := EncodeBatch(ps); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	if _, err := EncodeBatch(pubs(MaxBatch)); err != nil {
		t.Errorf("MaxBatch members: %v", err)
	}
}

// A batch no gateway sends is refused whole, naming what is wrong; a member
// whose headers have the wrong types decodes, for DecodeCommand to refuse.
func TestDecodeBatchRefuses(t *testing.T) {
	pubs := func(n int) []amqp.Publishing {
		ps := make([]amqp.Publishing, n)
		for i := range ps {
			ps[i] = batchMembers()[1].Publishing("c", "r")
		}
		return ps
	}
	encode := func(ps []amqp.Publishing) []byte {
		b, err := EncodeBatch(ps)
		if err != nil {
			t.Fatal(err)
		}
		return b.Body
	}
	good := encode(pubs(2))
	// one member with one header, tagged with an unknown type
	unknownTag := appendString(appendString(appendString(nil, "c"), ""), GetCustomer)
	unknownTag = append(appendString(append(append(unknownTag, 0), 1), "partner"), 'x', 7)
	manyHeaders := append(appendString(appendString(appendString(nil, "c"), ""), GetCustomer), 0, 65)
	for name, c := range map[string]struct {
		body []byte
		want error
	}{
		"empty":              {nil, ErrBadMessage},
		"truncated":          {good[:len(good)-1], ErrBadMessage},
		"a length past it":   {append(good, 0x7f), ErrBadMessage},
		"an unknown type":    {unknownTag, ErrBadMessage},
		"too many headers":   {manyHeaders, ErrBadMessage},
		"too many members":   {append(encode(pubs(MaxBatch)), good[:len(good)/2]...), ErrUntrusted},
		"over what it holds": {make([]byte, MaxBatch*(MaxBody+4<<10)+1), ErrUntrusted},
	} {
		d := amqp.Delivery{Type: BatchType, Body: c.body}
		_, err := DecodeBatch(&d)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
		if _, err := DecodeCommand(&d); !errors.Is(err, ErrBadMessage) || !strings.Contains(err.Error(), "batch") {
			t.Errorf("%s: DecodeCommand says %v", name, err)
		}
	}
	ps := pubs(2)
	ps[1].Headers[HeaderPartner] = "7"
	d := amqp.Delivery{Type: BatchType, Body: encode(ps)}
	members, err := DecodeBatch(&d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeCommand(&members[1]); !errors.Is(err, ErrBadMessage) {
		t.Errorf("a partner given as a string: %v", err)
	}
	// a batch inside a batch is no command
	inner, err := EncodeBatch(pubs(2))
	if err != nil {
		t.Fatal(err)
	}
	inner.CorrelationId, inner.Headers = "c", amqp.Table{HeaderPartner: int64(7)}
	d = amqp.Delivery{Type: BatchType, Body: encode(append(pubs(1), inner))}
	if members, err = DecodeBatch(&d); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeCommand(&members[1]); !errors.Is(err, ErrBadMessage) || !strings.Contains(err.Error(), "inside") {
		t.Errorf("a batch inside a batch: %v", err)
	}
}

func TestRepliesDecodeAsEncoded(t *testing.T) {
	replies := []Reply{
		{CorrelationID: "a", Result: Result{Status: 200, Body: []byte(`{"id":"A"}`)}},
		{CorrelationID: "b", Result: Result{Status: 409, Body: []byte(`{"error":{}}`), Replayed: true}},
		{CorrelationID: "c", Result: Result{Status: 500, Body: []byte{}}},
	}
	pub := EncodeReplies(replies)
	if pub.Type != BatchType {
		t.Fatalf("type %q", pub.Type)
	}
	got, err := DecodeReplies(pub.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, replies) {
		t.Errorf("decoded %+v, want %+v", got, replies)
	}
	bad := EncodeReplies([]Reply{{CorrelationID: "x", Result: Result{Status: 99}}})
	for name, body := range map[string][]byte{
		"truncated": pub.Body[:len(pub.Body)-3], "a status out of range": bad.Body,
	} {
		if _, err := DecodeReplies(body); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
