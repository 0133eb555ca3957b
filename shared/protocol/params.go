package protocol

import (
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// Products a first order may name.
var Products = []string{"oo-lite", "oo-std", "oo-ent", "erp-std", "erp-admin", "erp-lim"}

// Order durations.
const (
	Monthly = "monthly"
	Yearly  = "yearly"
)

// Limits of the params.
const (
	MaxIDLen     = 64
	MaxNameLen   = 200
	MaxEmailLen  = 254
	MaxPhoneLen  = 32
	MinLicenses  = 1
	MaxLicenses  = 100000
	ruleID       = "must be a string of 1 to 64 characters from A-Z a-z 0-9 . _ : -"
	ruleName     = "must be a string of 1 to 200 characters"
	ruleOptName  = "must be a string of at most 200 characters"
	ruleEmail    = "must be an email address such as name@example.com (at most 254 characters)"
	rulePhone    = "must be a string of at most 32 characters"
	ruleAdmin    = "must be an object with at least an email"
	ruleProduct  = "must be one of oo-lite, oo-std, oo-ent, erp-std, erp-admin, erp-lim"
	ruleLicenses = "must be an integer from 1 to 100000"
	ruleDuration = "must be monthly or yearly"
	// The params of the lists and of getOrders.
	MaxPage         = 100
	DefaultPage     = 50
	MaxCursorLen    = 1024
	MaxUnixTime     = 253402300799 // 9999-12-31T23:59:59Z
	ruleLimit       = "must be an integer from 1 to 100"
	ruleCursor      = "must be the nextCursor of the previous page, as it was given"
	ruleUnixTime    = "must be a time in Unix seconds, an integer from 0 to 253402300799"
	ruleOrderStatus = "must be one of active, suspended, cancelled, expired"
	ruleCommand     = "must be the name of a method that changes something, such as createCustomer"
	ruleEventType   = "must be command.succeeded or command.failed"
	ruleEventID     = "must be an event's webhook-id, msg_ and a UUID such as msg_0b6f3c1e-8f4a-4f0e-9a51-2c4b8e1d7f30"
	eventIDPrefix   = "msg_"
	ruleCallStatus  = "must be succeeded or failed (a call still pending is not listed; getRequest finds it)"
	ruleOrderIDs    = "must be an array of 1 to 100 distinct order ids, each a string of 1 to 64 characters from A-Z a-z 0-9 . _ : -"
	// MaxRequestIDLen is the longest X-Request-Id the gateway echoes.
	MaxRequestIDLen = 128
	ruleRequestID   = "must be a request id: 1 to 128 printable ASCII characters"
)

// Params is the validated, typed params of one method: a pointer to its
// params struct.
type Params any

// The params structs. Each field carries its rule in a `rule` tag, read once
// when the method is defined (rules.go): the rule validates the field, and its
// text is what a partner reads after the field's name when the value is out of
// the rule or of the wrong JSON type. The order of the fields is the order of
// the canonical encoding, on which the fingerprints of recorded calls rest:
// never reorder them.

// CreateCustomerParams are the params of createCustomer.
type CreateCustomerParams struct {
	ID    string `json:"id" rule:"id"`
	Name  string `json:"name" rule:"name"`
	Admin *Admin `json:"admin" rule:"admin"`
}

// Admin is the first administrator of a new customer.
type Admin struct {
	Email       string `json:"email" rule:"email"`
	Phone       string `json:"phone,omitempty" rule:"phone"`
	DisplayName string `json:"displayName,omitempty" rule:"optName"`
}

// CreateFirstOrderParams are the params of createFirstOrder.
type CreateFirstOrderParams struct {
	Customer string `json:"customer" rule:"id"`
	ID       string `json:"id" rule:"id"`
	Product  string `json:"product" rule:"product"`
	Licenses int    `json:"licenses" rule:"licenses"`
	Duration string `json:"duration" rule:"duration"`
}

// CreateRenewalOrderParams are the params of createRenewalOrder.
type CreateRenewalOrderParams struct {
	Parent string `json:"parent" rule:"id"`
	ID     string `json:"id" rule:"id"`
}

// OrderRef names one order: cancelOrder, suspendOrder, resumeOrder, getOrder.
type OrderRef struct {
	ID string `json:"id" rule:"id"`
}

// CustomerRef names one customer: getCustomer.
type CustomerRef struct {
	ID string `json:"id" rule:"id"`
}

// UpdateOrderParams are the params of updateOrder. Its fields but the id are
// optional: a field left out keeps its value.
type UpdateOrderParams struct {
	ID       string  `json:"id" rule:"id"`
	Licenses *int    `json:"licenses,omitempty" rule:"licenses"`
	Product  *string `json:"product,omitempty" rule:"product"`
}

// check is the rule of updateOrder that spans its fields.
func (p *UpdateOrderParams) check() *Error {
	if p.Licenses == nil && p.Product == nil {
		return InvalidParams("params", "params must carry licenses, product or both")
	}
	return nil
}

// CreateUserParams are the params of createUser.
type CreateUserParams struct {
	Email       string `json:"email" rule:"email"`
	DisplayName string `json:"displayName,omitempty" rule:"optName"`
}

// UserRef names one user of the consumer tenant: deleteUser, resetUser.
type UserRef struct {
	Email string `json:"email" rule:"email"`
}

// RequestRef names one of the partner's calls by its request id: getRequest.
type RequestRef struct {
	ID string `json:"id" rule:"requestID"`
}

// ListCustomersParams are the params of listCustomers. Every list takes
// limit (default DefaultPage) and the cursor of the previous page.
type ListCustomersParams struct {
	UpdatedSince *int    `json:"updatedSince,omitempty" rule:"unixTime"`
	Limit        *int    `json:"limit,omitempty" rule:"limit"`
	Cursor       *string `json:"cursor,omitempty" rule:"cursor"`
}

// ListOrdersParams are the params of listOrders.
type ListOrdersParams struct {
	Customer     *string `json:"customer,omitempty" rule:"id"`
	Status       *string `json:"status,omitempty" rule:"orderStatus"`
	UpdatedSince *int    `json:"updatedSince,omitempty" rule:"unixTime"`
	Limit        *int    `json:"limit,omitempty" rule:"limit"`
	Cursor       *string `json:"cursor,omitempty" rule:"cursor"`
}

// ListUsersParams are the params of listUsers.
type ListUsersParams struct {
	Limit  *int    `json:"limit,omitempty" rule:"limit"`
	Cursor *string `json:"cursor,omitempty" rule:"cursor"`
}

// ListRequestsParams are the params of listRequests.
type ListRequestsParams struct {
	Method *string `json:"method,omitempty" rule:"command"`
	Status *string `json:"status,omitempty" rule:"callStatus"`
	Since  *int    `json:"since,omitempty" rule:"unixTime"`
	Limit  *int    `json:"limit,omitempty" rule:"limit"`
	Cursor *string `json:"cursor,omitempty" rule:"cursor"`
}

// NoParams are the params of a method that takes none: getPartner.
type NoParams struct{}

// ListEventsParams are the params of listEvents.
type ListEventsParams struct {
	Type      *string `json:"type,omitempty" rule:"eventType"`
	Since     *int    `json:"since,omitempty" rule:"unixTime"`
	RequestID *string `json:"requestId,omitempty" rule:"requestID"`
	Limit     *int    `json:"limit,omitempty" rule:"limit"`
	Cursor    *string `json:"cursor,omitempty" rule:"cursor"`
}

// EventRef names one of the partner's webhook events by its webhook-id:
// replayEvent.
type EventRef struct {
	ID string `json:"id" rule:"eventID"`
}

// checkEventID: msg_ and a UUID in lower-case hex, as webhook-id shows it.
func checkEventID(field, v string) *Error {
	if len(v) != len(eventIDPrefix)+36 || v[:len(eventIDPrefix)] != eventIDPrefix {
		return InvalidParams(field, field+" "+ruleEventID)
	}
	for i, c := range v[len(eventIDPrefix):] {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return InvalidParams(field, field+" "+ruleEventID)
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return InvalidParams(field, field+" "+ruleEventID)
			}
		}
	}
	return nil
}

// GetOrdersParams are the params of getOrders.
type GetOrdersParams struct {
	IDs []string `json:"ids" rule:"orderIDs"`
}

// PageLimit is a list's limit, or DefaultPage when the call set none.
func PageLimit(limit *int) int {
	if limit == nil {
		return DefaultPage
	}
	return *limit
}

func checkLimit(field string, n int) *Error {
	if n < 1 || n > MaxPage {
		return InvalidParams(field, field+" "+ruleLimit)
	}
	return nil
}

func checkUnixTime(field string, n int) *Error {
	if n < 0 || n > MaxUnixTime {
		return InvalidParams(field, field+" "+ruleUnixTime)
	}
	return nil
}

// checkCursor only bounds a cursor's length and alphabet (base64url and
// '.'); what it says is checked against its binding by the reads.
func checkCursor(field, v string) *Error {
	if len(v) < 1 || len(v) > MaxCursorLen {
		return InvalidParams(field, field+" "+ruleCursor)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return InvalidParams(field, field+" "+ruleCursor)
		}
	}
	return nil
}

func oneOf(rule string, values ...string) func(field, v string) *Error {
	return func(field, v string) *Error {
		for _, w := range values {
			if v == w {
				return nil
			}
		}
		return InvalidParams(field, field+" "+rule)
	}
}

func checkCommand(field, v string) *Error {
	if m, ok := Lookup(v); ok && m.Mutates {
		return nil
	}
	return InvalidParams(field, field+" "+ruleCommand)
}

// checkOrderIDs: 1 to MaxPage ids, each an id, none twice.
func checkOrderIDs(field string, ids []string) *Error {
	if len(ids) < 1 || len(ids) > MaxPage {
		return InvalidParams(field, fmt.Sprintf("%s %s; it has %d", field, ruleOrderIDs, len(ids)))
	}
	seen := make(map[string]int, len(ids))
	for i, id := range ids {
		f := fmt.Sprintf("%s.%d", field, i)
		if e := checkID(f, id); e != nil {
			return e
		}
		if j, dup := seen[id]; dup {
			return InvalidParams(f, fmt.Sprintf("%s repeats %s.%d (%q); %s %s", f, field, j, id, field, ruleOrderIDs))
		}
		seen[id] = i
	}
	return nil
}

// checkRequestID applies the gateway's rule for X-Request-Id: a request id it
// would not have echoed cannot name a call.
func checkRequestID(field, v string) *Error {
	if len(v) < 1 || len(v) > MaxRequestIDLen {
		return InvalidParams(field, field+" "+ruleRequestID)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return InvalidParams(field, field+" "+ruleRequestID)
		}
	}
	return nil
}

func checkID(field, v string) *Error {
	if len(v) < 1 || len(v) > MaxIDLen {
		return InvalidParams(field, field+" "+ruleID)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return InvalidParams(field, field+" "+ruleID)
		}
	}
	return nil
}

func checkText(field, v string, lo, hi int, rule string) *Error {
	if e := checkRunes(field, v); e != nil {
		return e
	}
	n := utf8.RuneCountInString(v)
	if n < lo || n > hi || (lo > 0 && strings.TrimSpace(v) == "") {
		return InvalidParams(field, field+" "+rule)
	}
	return nil
}

// checkEmail accepts an address of printable ASCII (an internationalised
// domain in its xn-- form) that net/mail reads back as itself.
func checkEmail(field, v string) *Error {
	if e := checkRunes(field, v); e != nil {
		return e
	}
	if len(v) == 0 || len(v) > MaxEmailLen || !isASCII(v) {
		return InvalidParams(field, field+" "+ruleEmail)
	}
	a, err := mail.ParseAddress(v)
	at := strings.LastIndexByte(v, '@')
	if err != nil || a.Address != v || at < 1 || !strings.Contains(v[at:], ".") {
		return InvalidParams(field, field+" "+ruleEmail)
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// NormalizeEmail is the one spelling of an address the service keeps and
// compares: lower case, so that Ann@Example.com and ann@example.com are one
// user (SPEC section 2: emails compare case-insensitively).
func NormalizeEmail(v string) string { return strings.ToLower(v) }

func checkProduct(field, v string) *Error {
	for _, p := range Products {
		if p == v {
			return nil
		}
	}
	return InvalidParams(field, field+" "+ruleProduct)
}

func checkLicenses(field string, n int) *Error {
	if n < MinLicenses || n > MaxLicenses {
		return InvalidParams(field, field+" "+ruleLicenses)
	}
	return nil
}
