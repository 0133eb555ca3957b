package api

import (
	"net/http"
	"testing"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// FuzzParseEnvelope feeds the envelope decoder arbitrary bodies (seeds in
// testdata/fuzz/FuzzParseEnvelope). It must not panic; a body it refuses
// gets a 400 with a code; a body it accepts names a registered method and
// carries params the params decoder can judge without panicking.
func FuzzParseEnvelope(f *testing.F) {
	for _, s := range []string{
		getOrder, `{"method":"getOrder","params":{"id":"O1"},"METHOD":"cancelOrder"}`,
		`{"method":"getOrder","method":"x"}`, `{"method":"createCustomer","params":{"id":"A","name":"A\u0000B","admin":{"email":"a@example.com"}}}`,
		`[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]`, `{"method":"getOrder","params":"x"}`, `"\ud800"`, "{\"method\":\"\xff\"}", ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, raw, err := parseEnvelope(body)
		if err != nil {
			if err.Status != http.StatusBadRequest || err.Code == "" {
				t.Fatalf("refusal %d %q", err.Status, err.Code)
			}
			return
		}
		if m == nil || !protocol.Known(m.Name) {
			t.Fatalf("accepted an envelope without a registered method")
		}
		if _, perr := protocol.DecodeParams(m.Name, raw); perr != nil && perr.Status != http.StatusBadRequest {
			t.Fatalf("params refused with %d", perr.Status)
		}
	})
}
