package openapi

import (
	"net/http"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// errorCode is one error code of shared/protocol with the statuses it is
// answered with and when.
type errorCode struct {
	code     string
	statuses []int
	when     string
}

// errorCodes are every code of protocol/errors.go; a test fails on a code
// missing here.
var errorCodes = []errorCode{
	{protocol.CodeEventNotFound, []int{http.StatusNotFound}, "replayEvent: no event of this partner in the last 30 days has that id"},
	{protocol.CodeInvalidJSON, []int{http.StatusBadRequest}, "not JSON, truncated (the message gives the byte offset), a name twice, or an empty body"},
	{protocol.CodeInvalidRequest, []int{http.StatusBadRequest}, "body not an object, method missing or not a string, params missing or not an object, a bad Idempotency-Key, a request the HTTP server could not read"},
	{protocol.CodeUnknownMethod, []int{http.StatusBadRequest}, "method is not one of the methods"},
	{protocol.CodeInvalidParams, []int{http.StatusBadRequest}, "a param breaks its rule; field names it and the message the rule"},
	{protocol.CodeUnauthorized, []int{http.StatusUnauthorized}, "no key, an unknown key or a revoked key"},
	{protocol.CodeBadSignature, []int{http.StatusUnauthorized}, "a signing partner's call with a signature header missing, malformed, stale or wrong"},
	{protocol.CodeReplayedRequest, []int{http.StatusUnauthorized}, "a signing partner's nonce used again within the window"},
	{protocol.CodeForbiddenForKey, []int{http.StatusForbidden}, "a read-only key calling a method that changes something: nothing was done"},
	{protocol.CodeNotFound, []int{http.StatusNotFound}, "a path other than /"},
	{protocol.CodeMethodNotAllowed, []int{http.StatusMethodNotAllowed}, "a verb other than GET or POST on /"},
	{protocol.CodeCustomerNotFound, []int{http.StatusNotFound}, "the customer id is unknown to this partner"},
	{protocol.CodeOrderNotFound, []int{http.StatusNotFound}, "the order id is unknown to this partner"},
	{protocol.CodeUserNotFound, []int{http.StatusNotFound}, "the user is unknown in this partner's consumer tenant"},
	{protocol.CodeRequestNotFound, []int{http.StatusNotFound}, "the request id names none of this partner's recorded calls"},
	{protocol.CodeAlreadyExists, []int{http.StatusConflict}, "a create whose id (or email) exists with other params"},
	{protocol.CodeConflict, []int{http.StatusConflict}, "the call conflicts with the resource's state"},
	{protocol.CodeRequestInProgress, []int{http.StatusConflict}, "the same idempotent call is still running"},
	{protocol.CodeOrderCancelled, []int{http.StatusConflict}, "suspend, resume, update or renew a cancelled order"},
	{protocol.CodeBodyTooLarge, []int{http.StatusRequestEntityTooLarge}, "the body is over 64 KiB as sent or once its Content-Encoding is undone"},
	{protocol.CodeUnsupportedEncoding, []int{http.StatusUnsupportedMediaType}, "a Content-Encoding other than gzip or deflate (two layers at most)"},
	{protocol.CodeHeadersTooLarge, []int{http.StatusRequestHeaderFieldsTooLarge}, "the request line and headers are over 8 KiB, or more than 64 headers"},
	{protocol.CodeRenewalTooEarly, []int{http.StatusUnprocessableEntity}, "more than the renewal window is left on the current term"},
	{protocol.CodeIdempotencyKeyReused, []int{http.StatusUnprocessableEntity}, "an Idempotency-Key used again with other params"},
	{protocol.CodeNotAFirstOrder, []int{http.StatusUnprocessableEntity}, "a renewal id where a first order's id is needed"},
	{protocol.CodeRateLimited, []int{http.StatusTooManyRequests}, "over the partner's rate limit (or, for keys never seen valid, the client's); Retry-After tells when to retry"},
	{protocol.CodeUnavailable, []int{http.StatusServiceUnavailable}, "the broker, Redis or the key store is unreachable, or the broker blocks publishers: nothing was done; retry"},
	{protocol.CodeOverloaded, []int{http.StatusServiceUnavailable}, "more calls in flight than the service answers in time: nothing was done; retry after Retry-After seconds with the same key"},
	{protocol.CodeInternal, []int{http.StatusInternalServerError}, "the call failed inside the service (recorded; quote the requestId)"},
}

// codesByStatus are the error codes answered with each status, in the order
// of errorCodes.
func codesByStatus() map[int][]errorCode {
	m := map[int][]errorCode{}
	for _, c := range errorCodes {
		for _, s := range c.statuses {
			m[s] = append(m[s], c)
		}
	}
	return m
}
