package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// BatchType is the type of a message that carries several commands, or
// several replies: the gateway's publisher puts in one message the commands
// that queued while it waited for the broker's confirms, and a worker
// answers the members of such a batch in one reply message, so that the
// broker routes, stores, replicates, confirms, delivers and settles one
// message instead of several (docs/PERFORMANCE.md, "Transport batching").
// Each member keeps what its own message would have held: the worker runs
// each on its own, and the gateway matches each reply to its own call.
const BatchType = "batch"

// MaxBatch is the most commands, or replies, one batch carries.
const MaxBatch = 32

// The body of a batch is its members one after another, each a sequence of
// fields: a text or a byte string is its length (uvarint) then its bytes, a
// number a varint. A command member is its correlation id, message id, type,
// timestamp (Unix seconds, 0 for none), headers and body; its headers are
// their count, then for each its name, a type tag and the value. A reply
// member is its correlation id, status, replayed flag (0 or 1) and body.
const (
	tagString = 's'
	tagInt64  = 'i'
	tagTrue   = 't'
	tagFalse  = 'f'
)

// EncodeBatch encodes pubs, which share their reply address, as one
// persistent message. The reply address of the first is the batch's.
func EncodeBatch(pubs []amqp.Publishing) (amqp.Publishing, error) {
	if len(pubs) < 2 || len(pubs) > MaxBatch {
		return amqp.Publishing{}, fmt.Errorf("a batch has 2 to %d commands, not %d", MaxBatch, len(pubs))
	}
	size := 0
	for i := range pubs {
		size += len(pubs[i].Body) + 256
	}
	b := make([]byte, 0, size)
	for i := range pubs {
		p := &pubs[i]
		if p.ReplyTo != pubs[0].ReplyTo {
			return amqp.Publishing{}, errors.New("the commands of a batch share their reply address")
		}
		b = appendString(b, p.CorrelationId)
		b = appendString(b, p.MessageId)
		b = appendString(b, p.Type)
		var ts int64
		if !p.Timestamp.IsZero() {
			ts = p.Timestamp.Unix()
		}
		b = binary.AppendVarint(b, ts)
		b = binary.AppendUvarint(b, uint64(len(p.Headers)))
		for k, v := range p.Headers {
			b = appendString(b, k)
			switch v := v.(type) {
			case string:
				b = appendString(append(b, tagString), v)
			case int64:
				b = binary.AppendVarint(append(b, tagInt64), v)
			case bool:
				if v {
					b = append(b, tagTrue)
				} else {
					b = append(b, tagFalse)
				}
			default:
				return amqp.Publishing{}, fmt.Errorf("header %s is a %T: a batch carries strings, booleans and int64s", k, v)
			}
		}
		b = appendString(b, p.Body)
	}
	return amqp.Publishing{
		ContentType:  "application/octet-stream",
		DeliveryMode: amqp.Persistent,
		ReplyTo:      pubs[0].ReplyTo,
		Type:         BatchType,
		Body:         b,
	}, nil
}

// DecodeBatch reads the members of a batch delivery, trusting nothing but
// the shape: each comes back as the delivery its own message would have
// been (same tag, redelivery flag and reply address as the batch), for
// DecodeCommand to check like any other. A batch over MaxBatch members, or
// larger than they could fill, is refused whole.
func DecodeBatch(d *amqp.Delivery) ([]amqp.Delivery, error) {
	if len(d.Body) > MaxBatch*(MaxBody+4<<10) {
		return nil, fmt.Errorf("%w: batch of %d bytes, over what %d calls can fill", ErrUntrusted, len(d.Body), MaxBatch)
	}
	r := reader{b: d.Body}
	var out []amqp.Delivery
	for len(r.b) > 0 && r.err == nil {
		if len(out) == MaxBatch {
			return nil, fmt.Errorf("%w: a batch of more than %d commands", ErrUntrusted, MaxBatch)
		}
		md := *d
		md.ContentType = "application/json"
		md.CorrelationId, md.MessageId, md.Type = r.string(), r.string(), r.string()
		md.Timestamp = time.Time{}
		if ts := r.varint(); ts != 0 {
			md.Timestamp = time.Unix(ts, 0)
		}
		n := r.uvarint()
		if n > 64 {
			r.fail("more than 64 headers")
		}
		md.Headers = make(amqp.Table, n)
		for i := uint64(0); i < n && r.err == nil; i++ {
			k := r.string()
			switch tag := r.byte(); tag {
			case tagString:
				md.Headers[k] = r.string()
			case tagInt64:
				md.Headers[k] = r.varint()
			case tagTrue, tagFalse:
				md.Headers[k] = tag == tagTrue
			default:
				r.fail(fmt.Sprintf("header %q of unknown type %q", k, tag))
			}
		}
		md.Body = r.bytes()
		out = append(out, md)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: batch member %d: %v", ErrBadMessage, len(out), r.err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: an empty batch", ErrBadMessage)
	}
	return out, nil
}

// MemberPublishing is a member of a batch, as the message of its own that
// the gateway would have published: a worker puts a member it cannot settle
// with the batch back on the queue this way, to run alone.
func MemberPublishing(md *amqp.Delivery) amqp.Publishing {
	return amqp.Publishing{
		ContentType:   md.ContentType,
		DeliveryMode:  amqp.Persistent,
		CorrelationId: md.CorrelationId,
		ReplyTo:       md.ReplyTo,
		MessageId:     md.MessageId,
		Type:          md.Type,
		Timestamp:     md.Timestamp,
		Headers:       md.Headers,
		Body:          md.Body,
	}
}

// Reply is a result on its way to the call whose correlation id it names.
type Reply struct {
	CorrelationID string
	Result
}

// EncodeReplies encodes replies, which go to one gateway, as one message.
func EncodeReplies(replies []Reply) amqp.Publishing {
	size := 0
	for i := range replies {
		size += len(replies[i].Body) + 32
	}
	b := make([]byte, 0, size)
	for i := range replies {
		r := &replies[i]
		b = appendString(b, r.CorrelationID)
		b = binary.AppendVarint(b, int64(r.Status))
		flag := byte(0)
		if r.Replayed {
			flag = 1
		}
		b = append(b, flag)
		b = appendString(b, r.Body)
	}
	return amqp.Publishing{ContentType: "application/octet-stream", Type: BatchType, Body: b}
}

// DecodeReplies reads a batch of replies.
func DecodeReplies(body []byte) ([]Reply, error) {
	r := reader{b: body}
	var out []Reply
	for len(r.b) > 0 && r.err == nil {
		var rep Reply
		rep.CorrelationID = r.string()
		rep.Status = int(r.varint())
		rep.Replayed = r.byte() == 1
		rep.Body = r.bytes()
		if r.err == nil && (rep.Status < 200 || rep.Status > 599) {
			r.fail(fmt.Sprintf("reply status %d", rep.Status))
		}
		out = append(out, rep)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: reply %d of a batch: %v", ErrBadMessage, len(out), r.err)
	}
	return out, nil
}

// BatchCorrelationIDs reads the correlation ids of a batch's members, for
// the publisher to answer each when the broker returns the batch.
func BatchCorrelationIDs(body []byte) []string {
	members, err := DecodeBatch(&amqp.Delivery{Body: body})
	if err != nil {
		return nil
	}
	ids := make([]string, len(members))
	for i := range members {
		ids[i] = members[i].CorrelationId
	}
	return ids
}

// appendString appends s, a text or a byte string, with its length.
func appendString[T string | []byte](b []byte, s T) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// reader reads a batch's fields; the first failure sticks, and every read
// after it returns a zero value.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(why string) {
	if r.err == nil {
		r.err = errors.New(why)
	}
	r.b = nil
}

func (r *reader) uvarint() uint64 { return number(r, binary.Uvarint) }

func (r *reader) varint() int64 { return number(r, binary.Varint) }

// number reads a number with read (binary.Uvarint or binary.Varint).
func number[T uint64 | int64](r *reader, read func([]byte) (T, int)) T {
	v, n := read(r.b)
	if n <= 0 {
		r.fail("truncated or overlong number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bytes reads a byte string, sharing the batch's memory.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail("a length past the end")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes()) }
