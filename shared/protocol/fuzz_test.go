package protocol

import (
	"bytes"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// FuzzDecodeParams feeds every method's params decoder arbitrary bytes. The
// seed corpus is decodeCases plus testdata/fuzz/FuzzDecodeParams. Whatever
// the input, decoding must not panic, and params it accepts must be stable:
// their canonical form decodes and validates again to the same form, and no
// text field holds a character the service refuses (PostgreSQL refuses NUL).
func FuzzDecodeParams(f *testing.F) {
	for _, c := range decodeCases {
		f.Add(c.method, []byte(c.params))
	}
	f.Fuzz(func(t *testing.T, method string, raw []byte) {
		p, err := DecodeParams(method, raw)
		if err != nil {
			if err.Status != 400 || err.Code == "" || err.Message == "" {
				t.Fatalf("refusal %d %q %q is not a 400 with a code and a message", err.Status, err.Code, err.Message)
			}
			if err.Field != "" && !strings.HasPrefix(err.Field, "params") && err.Field != "method" {
				t.Fatalf("refusal names field %q", err.Field)
			}
			return
		}
		canon := Canonical(p)
		if bytes.Contains(canon, []byte(`\u0000`)) {
			t.Fatalf("accepted params hold NUL: %s", canon)
		}
		again, err := DecodeParams(method, canon)
		if err != nil {
			t.Fatalf("canonical form %s refused: %v", canon, err)
		}
		if c2 := Canonical(again); !bytes.Equal(c2, canon) {
			t.Fatalf("canonical form not stable:\n%s\n%s", canon, c2)
		}
	})
}

// FuzzDecodeCommand feeds the worker's message decoder arbitrary message
// properties and bodies, as a forged or corrupted message on the queue
// would carry them: it must not panic, and a command it accepts names a
// registered method and a positive partner.
func FuzzDecodeCommand(f *testing.F) {
	f.Add(CreateCustomer, int64(1), "rid-1", "p:1:customer:ABC", "fp", []byte(`{"id":"ABC","name":"N","admin":{"email":"a@example.com"}}`))
	f.Add("dropTables", int64(-1), "", "", "", []byte(`{`))
	f.Add(GetOrder, int64(0), "\x00", "k", "", []byte(`{"id":"O1"}`))
	f.Fuzz(func(t *testing.T, method string, partner int64, rid, key, fp string, body []byte) {
		d := &amqp.Delivery{Type: method, Body: body, Timestamp: time.Unix(0, 0), Headers: amqp.Table{
			HeaderPartner: partner, HeaderRequestID: rid, HeaderIdemKey: key, HeaderIdemFP: fp,
		}}
		cmd, err := DecodeCommand(d)
		if err != nil {
			return
		}
		if !Known(cmd.Method) || cmd.Partner <= 0 {
			t.Fatalf("accepted command of method %q, partner %d", cmd.Method, cmd.Partner)
		}
		if p, perr := DecodeParams(cmd.Method, cmd.Params); perr == nil {
			Canonical(p)
		}
	})
}
