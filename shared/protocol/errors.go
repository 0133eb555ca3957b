package protocol

import (
	"encoding/json"
	"net/http"
)

// Error codes of SPEC section 1.
const (
	CodeInvalidJSON          = "invalid_json"
	CodeInvalidRequest       = "invalid_request"
	CodeUnknownMethod        = "unknown_method"
	CodeInvalidParams        = "invalid_params"
	CodeUnauthorized         = "unauthorized"
	CodeBadSignature         = "bad_signature"
	CodeReplayedRequest      = "replayed_request"
	CodeForbiddenForKey      = "forbidden_for_key"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeCustomerNotFound     = "customer_not_found"
	CodeOrderNotFound        = "order_not_found"
	CodeUserNotFound         = "user_not_found"
	CodeRequestNotFound      = "request_not_found"
	CodeEventNotFound        = "event_not_found"
	CodeAlreadyExists        = "already_exists"
	CodeConflict             = "conflict"
	CodeRequestInProgress    = "request_in_progress"
	CodeOrderCancelled       = "order_cancelled"
	CodeBodyTooLarge         = "body_too_large"
	CodeUnsupportedEncoding  = "unsupported_encoding"
	CodeHeadersTooLarge      = "headers_too_large"
	CodeRenewalTooEarly      = "renewal_too_early"
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	CodeNotAFirstOrder       = "not_a_first_order"
	CodeRateLimited          = "rate_limited"
	CodeUnavailable          = "unavailable"
	CodeOverloaded           = "overloaded"
	CodeInternal             = "internal"
)

// Error is an API error: the HTTP status and the body's error object.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// NewError builds an Error; field may be empty.
func NewError(status int, code, field, message string) *Error {
	return &Error{Status: status, Code: code, Field: field, Message: message}
}

// InvalidParams is a 400 naming the field at fault and the rule it breaks.
func InvalidParams(field, message string) *Error {
	return NewError(http.StatusBadRequest, CodeInvalidParams, field, message)
}

type errorBody struct {
	Error     *Error `json:"error"`
	RequestID string `json:"requestId"`
}

// Body encodes the error response body of SPEC section 1.
func (e *Error) Body(requestID string) []byte {
	b, _ := json.Marshal(errorBody{Error: e, RequestID: requestID})
	return b
}

// PendingBody is the body of a 202: the worker did not answer in time.
func PendingBody(requestID string) []byte {
	b, _ := json.Marshal(struct {
		Status    string `json:"status"`
		RequestID string `json:"requestId"`
	}{"pending", requestID})
	return b
}

// KeyReused is the refusal of an idempotency key used again with other
// params: 422 idempotency_key_reused for a header key, 409 already_exists
// naming keyField for a key derived from a create call's id (SPEC section 3).
func KeyReused(derived bool, keyField string) *Error {
	if derived && keyField != "" {
		return NewError(http.StatusConflict, CodeAlreadyExists, keyField, keyField+" was already created with other params")
	}
	return NewError(http.StatusUnprocessableEntity, CodeIdempotencyKeyReused, "Idempotency-Key",
		"this Idempotency-Key was already used with other params")
}
