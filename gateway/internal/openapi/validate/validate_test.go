package validate

import (
	"net/http"
	"strings"
	"testing"

	"github.com/oneoffice/provisioner/gateway/internal/openapi"
)

// TestAnswersAreHeldToTheDocument: answers the service gives pass, and
// answers that break the document fail, naming what breaks it.
func TestAnswersAreHeldToTheDocument(t *testing.T) {
	v, err := New(openapi.JSON)
	if err != nil {
		t.Fatal(err)
	}
	order := `{"id":"O1","customer":"C1","product":"oo-lite","licenses":20,"duration":"monthly","status":"active",` +
		`"termStart":1,"termEnd":2,"createdAt":1,"updatedAt":1,"renewals":[{"id":"R1","termStart":2,"termEnd":3,"createdAt":1}]}`
	for _, c := range []struct {
		name, method string
		status       int
		body, want   string // want: "" passes, else a word of the error
	}{
		{"customer", "createCustomer", 200, `{"id":1,"remoteId":"ABC","name":"ABC Company","partner":1,"createdAt":1684313717,"isActive":true,"admin":{"email":"a@example.com"}}`, ""},
		{"order", "getOrder", 200, order, ""},
		{"request pending", "getRequest", 200, `{"requestId":"r","method":"createCustomer","status":"pending","response":null,"createdAt":1,"completedAt":null}`, ""},
		{"request done", "getRequest", 200, `{"requestId":"r","method":"getOrder","status":"succeeded","response":{"status":404,"body":{"x":1}},"createdAt":1,"completedAt":2}`, ""},
		{"error", "getOrder", 404, `{"error":{"code":"order_not_found","message":"m","field":"params.id"},"requestId":"r"}`, ""},
		{"error without a method", "", 401, `{"error":{"code":"unauthorized","message":"m"},"requestId":"r"}`, ""},
		{"pending", "createCustomer", 202, `{"status":"pending","requestId":"r"}`, ""},

		{"customer with a field missing", "createCustomer", 200, `{"id":1,"remoteId":"ABC","name":"ABC Company","partner":1,"createdAt":1,"admin":{"email":"a@example.com"}}`, "isActive"},
		{"order with a string for licenses", "getOrder", 200, strings.Replace(order, `"licenses":20`, `"licenses":"20"`, 1), "licenses"},
		{"order with an unknown status", "cancelOrder", 200, strings.Replace(order, `"active"`, `"closed"`, 1), "status"},
		{"order with renewals null", "getOrder", 200, strings.Replace(order, `[{"id":"R1","termStart":2,"termEnd":3,"createdAt":1}]`, `null`, 1), "renewals"},
		{"order with a field the document lacks", "getOrder", 200, strings.Replace(order, `{"id":"O1"`, `{"extra":1,"id":"O1"`, 1), "extra"},
		{"a customer answering getOrder", "getOrder", 200, `{"id":1,"remoteId":"ABC","name":"A","partner":1,"createdAt":1,"isActive":true,"admin":{"email":"a@example.com"}}`, "remoteId"},
		{"error code of another status", "getOrder", 404, `{"error":{"code":"rate_limited","message":"m"},"requestId":"r"}`, "code"},
		{"error without requestId", "getOrder", 409, `{"error":{"code":"order_cancelled","message":"m"}}`, "requestId"},
		{"status not in the document", "getOrder", 418, `{}`, "418"},
		{"unknown method answered 200", "getNothing", 200, `{}`, "getNothing"},
		{"not JSON", "getOrder", 500, `internal error`, "not JSON"},
	} {
		err := v.Response(c.method, c.status, []byte(c.body))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && err == nil:
			t.Errorf("%s: passed, want a violation naming %s", c.name, c.want)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: %v\nwant it to name %s", c.name, err, c.want)
		}
	}
}

// TestHeadersAreHeldToTheDocument: the headers every answer carries are
// required, and a declared header's value is held to its schema.
func TestHeadersAreHeldToTheDocument(t *testing.T) {
	v, err := New(openapi.JSON)
	if err != nil {
		t.Fatal(err)
	}
	good := http.Header{"X-Request-Id": {"r-1"}, "Cache-Control": {"no-store"}}
	with := func(k, val string) http.Header {
		h := good.Clone()
		h.Set(k, val)
		return h
	}
	without := func(k string) http.Header {
		h := good.Clone()
		h.Del(k)
		return h
	}
	for _, c := range []struct {
		name   string
		status int
		h      http.Header
		want   string
	}{
		{"plain", 200, good, ""},
		{"rate limited", 429, with("Retry-After", "2"), ""},
		{"replayed", 409, with("Idempotent-Replayed", "true"), ""},
		{"no request id", 404, without("X-Request-Id"), "X-Request-Id missing"},
		{"cached", 200, with("Cache-Control", "max-age=60"), "Cache-Control"},
		{"Retry-After in words", 429, with("Retry-After", "soon"), "Retry-After"},
		{"Retry-After zero", 503, with("Retry-After", "0"), "Retry-After"},
		{"RateLimit-Remaining not a number", 200, with("RateLimit-Remaining", "x"), "RateLimit-Remaining"},
	} {
		err := v.Headers(c.status, c.h)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want a violation naming %s", c.name, err, c.want)
		}
	}
}

func TestEventsAreHeldToTheDocument(t *testing.T) {
	v, err := New(openapi.JSON)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ body, want string }{
		{`{"type":"command.succeeded","requestId":"r","method":"suspendOrder","orderId":"O1","response":{"status":200,"body":{"id":"O1"}},"occurredAt":1}`, ""},
		{`{"type":"command.failed","requestId":"r","method":"createUser","response":{"status":500,"body":{}},"occurredAt":1}`, ""},
		{`{"type":"ping","occurredAt":1}`, ""},
		{`{"type":"command.succeeded","requestId":"r","method":"createUser","occurredAt":1}`, "response"},
		{`{"type":"command.succeeded","requestId":"r","method":"createUser","response":{"status":"200","body":{}},"occurredAt":1}`, "status"},
		{`{"type":"ping","occurredAt":"now"}`, "occurredAt"},
		{`{"type":"command.lost","occurredAt":1}`, "command.lost"},
	} {
		err := v.Event([]byte(c.body))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.body, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want a violation naming %s", c.body, err, c.want)
		}
	}
}
