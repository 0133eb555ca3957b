package e2e

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/oneoffice/provisioner/gateway/internal/openapi"
	"github.com/oneoffice/provisioner/gateway/internal/openapi/validate"
)

// contract compiles the OpenAPI document once for the package: the copy
// the binaries under test embed (TestTheGatewayServesTheContract checks
// that they serve it).
var contract = sync.OnceValues(func() (*validate.Validator, error) { return validate.New(openapi.JSON) })

// checked counts the answers held to the document, told with -v.
var checked atomic.Int64

// checkAnswer holds an answer the suite got to the OpenAPI document (SPEC
// section 8b): a 200 to the result schema of the method the call named,
// any other status to that status's schema. A violation fails the test,
// naming the method, the status and what breaks the document. It may run in
// any goroutine.
func checkAnswer(t testing.TB, verb, body string, headers []string, r Response) {
	if verb == http.MethodHead {
		return // no body
	}
	v, err := contract()
	if err != nil {
		t.Errorf("the OpenAPI document does not compile: %v", err)
		return
	}
	checked.Add(1)
	method := methodOf(body, headers)
	if err := v.Response(method, r.Status, r.Body); err != nil {
		t.Errorf("an answer breaks the OpenAPI document: %v", err)
	}
	if err := v.Headers(r.Status, r.Header); err != nil {
		t.Errorf("the headers of an answer to %q break the OpenAPI document: %v", method, err)
	}
}

// checkEvent holds the body of a webhook event the suite's endpoints get to
// the document's webhooks.
func checkEvent(body []byte) error {
	v, err := contract()
	if err != nil {
		return err
	}
	checked.Add(1)
	return v.Event(body)
}

// methodOf is the method a call's body names, inflated first when the call
// says it is encoded; "" when it names none.
func methodOf(body string, headers []string) string {
	b := []byte(body)
	for i := 0; i+1 < len(headers); i += 2 {
		if !strings.EqualFold(headers[i], "Content-Encoding") {
			continue
		}
		var r io.Reader
		var err error
		switch strings.TrimSpace(headers[i+1]) {
		case "gzip":
			r, err = gzip.NewReader(bytes.NewReader(b))
		case "deflate":
			r, err = zlib.NewReader(bytes.NewReader(b))
		}
		if r != nil && err == nil {
			if inflated, err := io.ReadAll(io.LimitReader(r, 1<<20)); err == nil {
				b = inflated
			}
		}
	}
	var env map[string]json.RawMessage
	var method string
	if json.Unmarshal(b, &env) == nil {
		_ = json.Unmarshal(env["method"], &method)
	}
	return method
}

// TestTheGatewayServesTheContract: a running gateway answers GET
// /openapi.json without a key with the document kept in the repository.
func TestTheGatewayServesTheContract(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	resp, err := s.client.Get("http://" + s.HTTPAddr + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(b, openapi.JSON) {
		t.Fatalf("GET /openapi.json: %d %s, %d bytes; want 200 application/json and openapi.json's %d bytes",
			resp.StatusCode, resp.Header.Get("Content-Type"), len(b), len(openapi.JSON))
	}
	if _, err := validate.New(b); err != nil {
		t.Fatalf("the served document does not compile: %v", err)
	}
}

// recorder is a testing.TB that keeps what it is told to fail with.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// TestAnAnswerThatBreaksTheContractFails: the check every call of the suite
// goes through fails a test on an answer off the document, and names the
// method, the status and the field; a gzip-encoded call's method is found.
func TestAnAnswerThatBreaksTheContractFails(t *testing.T) {
	t.Parallel()
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write([]byte(`{"method":"createUser","params":{"email":"a@example.com"}}`))
	_ = w.Close()
	ok := http.Header{"X-Request-Id": {"r"}, "Cache-Control": {"no-store"}}
	for _, c := range []struct {
		name, body string
		headers    []string
		r          Response
		want       string // "" passes
	}{
		{"a user", `{"method":"createUser","params":{"email":"a@example.com"}}`, nil,
			Response{Status: 200, Header: ok, Body: []byte(`{"email":"a@example.com","displayName":"","createdAt":1,"isActive":true}`)}, ""},
		{"a gzip call's user", gz.String(), []string{"Content-Encoding", "gzip"},
			Response{Status: 200, Header: ok, Body: []byte(`{"email":"a@example.com","displayName":"","createdAt":1,"isActive":true}`)}, ""},
		{"a user without isActive", `{"method":"createUser","params":{"email":"a@example.com"}}`, nil,
			Response{Status: 200, Header: ok, Body: []byte(`{"email":"a@example.com","displayName":"","createdAt":1}`)}, `"createUser" 200`},
		{"a 429 with another code", `{"method":"getOrder","params":{"id":"O1"}}`, nil,
			Response{Status: 429, Header: ok, Body: []byte(`{"error":{"code":"internal","message":"m"},"requestId":"r"}`)}, `"getOrder" 429`},
		{"a 404 without X-Request-Id", `{"method":"getOrder","params":{"id":"O1"}}`, nil,
			Response{Status: 404, Header: http.Header{"Cache-Control": {"no-store"}},
				Body: []byte(`{"error":{"code":"order_not_found","message":"m"},"requestId":"r"}`)}, `X-Request-Id missing`},
	} {
		rec := &recorder{TB: t}
		checkAnswer(rec, http.MethodPost, c.body, c.headers, c.r)
		got := strings.Join(rec.errors, "\n")
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: the check said %q, want it to name %q", c.name, got, c.want)
		}
	}
}
