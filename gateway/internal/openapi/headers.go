package openapi

import "net/http"

// Header names the gateway reads or writes (SPEC sections 1, 3, 6): the
// api and signing packages' tests hold their own names to these.
const (
	HeaderAPIKey             = "x-api-key"
	HeaderAuthorization      = "Authorization"
	HeaderIdempotencyKey     = "Idempotency-Key"
	HeaderRequestID          = "X-Request-Id"
	HeaderTraceparent        = "traceparent"
	HeaderTracestate         = "tracestate"
	HeaderUserAgent          = "User-Agent"
	HeaderContentEncoding    = "Content-Encoding"
	HeaderSignatureTimestamp = "X-Signature-Timestamp"
	HeaderSignatureNonce     = "X-Signature-Nonce"
	HeaderSignature          = "X-Signature"
	HeaderIdempotentReplayed = "Idempotent-Replayed"
	HeaderRateLimitLimit     = "RateLimit-Limit"
	HeaderRateLimitRemaining = "RateLimit-Remaining"
	HeaderRateLimitReset     = "RateLimit-Reset"
	HeaderRetryAfter         = "Retry-After"
	HeaderCacheControl       = "Cache-Control"
	HeaderAllow              = "Allow"
	HeaderETag               = "ETag"
	HeaderIfNoneMatch        = "If-None-Match"
	HeaderKey                = "OneOffice-Key"
)

// printable is printable ASCII, space included.
const printable = `^[ -~]+$`

// header is one request or response header of the document.
type header struct {
	name   string
	desc   string
	schema map[string]any
	// statuses are the responses that carry it; nil is every response.
	// Request headers have none.
	statuses []int
	// always: every response of statuses carries it.
	always bool
}

// requestHeaders are the headers a call may carry besides the key, which
// the security schemes describe.
var requestHeaders = []header{
	{name: HeaderIdempotencyKey, desc: "Makes a mutating call safe to repeat: the first call runs and its answer is kept (24 h by default); the same key and params get it again, byte for byte, with Idempotent-Replayed: true; other params are 422 idempotency_key_reused. Reads and resetUser ignore it. Create calls without it use a key derived from the id they create.",
		schema: map[string]any{"type": "string", "minLength": 1, "maxLength": 255, "pattern": printable}},
	{name: HeaderRequestID, desc: "The call's request id, echoed in the answer and its body; one is made when absent or not 1 to 128 printable ASCII characters. getRequest finds the call by it.",
		schema: map[string]any{"type": "string", "minLength": 1, "maxLength": 128, "pattern": printable}},
	{name: HeaderTraceparent, desc: "W3C trace context, continued by the gateway and the worker; a new trace is started without it.",
		schema: map[string]any{"type": "string", "pattern": `^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`}},
	{name: HeaderTracestate, desc: "W3C trace state, passed on with traceparent to the worker and the answer.",
		schema: map[string]any{"type": "string"}},
	{name: HeaderUserAgent, desc: "The caller's client, recorded on the call's trace (user_agent.original) when tracing is on.",
		schema: map[string]any{"type": "string"}},
	{name: HeaderContentEncoding, desc: "gzip or deflate, two layers at most; the body must stay within 64 KiB once inflated (413). Any other encoding is 415 unsupported_encoding.",
		schema: map[string]any{"type": "string"}},
	{name: HeaderSignatureTimestamp, desc: "Request signing (required of partners that sign): the time of signing in Unix seconds, within 60 s of the gateway's clock.",
		schema: map[string]any{"type": "string", "pattern": `^[0-9]+$`}},
	{name: HeaderSignatureNonce, desc: "Request signing: 1 to 64 visible ASCII characters, new for every call (401 replayed_request when used again within the window).",
		schema: map[string]any{"type": "string", "minLength": 1, "maxLength": 64, "pattern": `^[!-~]+$`}},
	{name: HeaderSignature, desc: `Request signing: v1= and the lowercase hex HMAC-SHA256, keyed with the partner's signing secret, of timestamp + "\n" + nonce + "\n" + the body as sent.`,
		schema: map[string]any{"type": "string", "pattern": `^v1=[0-9a-f]{64}$`}},
}

var allErrors = []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed,
	http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity,
	http.StatusTooManyRequests, http.StatusRequestHeaderFieldsTooLarge, http.StatusInternalServerError, http.StatusServiceUnavailable}

// responseHeaders are the headers of the answers.
var responseHeaders = []header{
	{name: HeaderRequestID, desc: "The call's request id: the partner's X-Request-Id or one made for the call.",
		schema: map[string]any{"type": "string", "minLength": 1, "maxLength": 128, "pattern": printable}, always: true},
	{name: HeaderCacheControl, desc: "Every answer is no-store.", schema: map[string]any{"type": "string", "const": "no-store"}, always: true},
	{name: HeaderTraceparent, desc: "The trace context of the call.", schema: map[string]any{"type": "string"}},
	{name: HeaderIdempotentReplayed, desc: "true on an answer given again from the call's idempotency record or the command ledger rather than run again.",
		schema: map[string]any{"type": "string", "const": "true"}, statuses: []int{http.StatusOK, http.StatusNotFound,
			http.StatusConflict, http.StatusUnprocessableEntity, http.StatusInternalServerError}},
	{name: HeaderRateLimitLimit, desc: "While the per-partner rate limit is on: the calls the partner may make per second.",
		schema: map[string]any{"type": "integer"}},
	{name: HeaderRateLimitRemaining, desc: "While the per-partner rate limit is on: the calls left now.",
		schema: map[string]any{"type": "integer"}},
	{name: HeaderRateLimitReset, desc: "While the per-partner rate limit is on: seconds until the full budget is back.",
		schema: map[string]any{"type": "integer"}},
	{name: HeaderRetryAfter, desc: "Seconds to wait before calling again.", schema: map[string]any{"type": "integer", "minimum": 1},
		statuses: []int{http.StatusTooManyRequests, http.StatusServiceUnavailable}},
	{name: HeaderKey, desc: "The kind of the call's key, once it is known: live or test (sandbox), and \", read-only\" for a key that may only read.",
		schema: map[string]any{"type": "string", "enum": []any{"live", "test", "live, read-only", "test, read-only"}}},
	{name: HeaderAllow, desc: "The verbs / answers to.", schema: map[string]any{"type": "string"},
		statuses: []int{http.StatusMethodNotAllowed}},
}

// carries reports whether h is on an answer of status.
func (h header) carries(status int) bool {
	if h.statuses == nil {
		return true
	}
	for _, s := range h.statuses {
		if s == status {
			return true
		}
	}
	return false
}

// componentName is h's name as a component key: letters and digits only.
func componentName(name string) string {
	b := make([]byte, 0, len(name))
	up := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '-' {
			up = true
			continue
		}
		if up && c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		up = false
		b = append(b, c)
	}
	return string(b)
}
