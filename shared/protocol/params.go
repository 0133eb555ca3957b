package protocol

import (
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
	// MaxRequestIDLen is the longest X-Request-Id the gateway echoes.
	MaxRequestIDLen = 128
	ruleRequestID   = "must be a request id: 1 to 128 printable ASCII characters"
)

// Params is the validated, typed params of one method.
type Params interface {
	Validate() *Error
}

// CreateCustomerParams are the params of createCustomer.
type CreateCustomerParams struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Admin *Admin `json:"admin"`
}

// Admin is the first administrator of a new customer.
type Admin struct {
	Email       string `json:"email"`
	Phone       string `json:"phone,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
}

// CreateFirstOrderParams are the params of createFirstOrder.
type CreateFirstOrderParams struct {
	Customer string `json:"customer"`
	ID       string `json:"id"`
	Product  string `json:"product"`
	Licenses int    `json:"licenses"`
	Duration string `json:"duration"`
}

// CreateRenewalOrderParams are the params of createRenewalOrder.
type CreateRenewalOrderParams struct {
	Parent string `json:"parent"`
	ID     string `json:"id"`
}

// OrderRef names one order: cancelOrder, suspendOrder, resumeOrder, getOrder.
type OrderRef struct {
	ID string `json:"id"`
}

// CustomerRef names one customer: getCustomer.
type CustomerRef struct {
	ID string `json:"id"`
}

// UpdateOrderParams are the params of updateOrder.
type UpdateOrderParams struct {
	ID       string  `json:"id"`
	Licenses *int    `json:"licenses,omitempty"`
	Product  *string `json:"product,omitempty"`
}

// CreateUserParams are the params of createUser.
type CreateUserParams struct {
	Email       string `json:"email"`
	DisplayName string `json:"displayName,omitempty"`
}

// UserRef names one user of the consumer tenant: deleteUser, resetUser.
type UserRef struct {
	Email string `json:"email"`
}

// RequestRef names one of the partner's calls by its request id: getRequest.
type RequestRef struct {
	ID string `json:"id"`
}

// Validate applies the gateway's rule for X-Request-Id: a request id it
// would not have echoed cannot name a call.
func (p *RequestRef) Validate() *Error {
	if len(p.ID) < 1 || len(p.ID) > MaxRequestIDLen {
		return InvalidParams("params.id", "params.id "+ruleRequestID)
	}
	for i := 0; i < len(p.ID); i++ {
		if p.ID[i] < 0x20 || p.ID[i] > 0x7e {
			return InvalidParams("params.id", "params.id "+ruleRequestID)
		}
	}
	return nil
}

func (p *CreateCustomerParams) Validate() *Error {
	if e := checkID("params.id", p.ID); e != nil {
		return e
	}
	if e := checkText("params.name", p.Name, 1, MaxNameLen, ruleName); e != nil {
		return e
	}
	if p.Admin == nil {
		return InvalidParams("params.admin", "params.admin "+ruleAdmin)
	}
	if e := checkEmail("params.admin.email", p.Admin.Email); e != nil {
		return e
	}
	p.Admin.Email = NormalizeEmail(p.Admin.Email)
	if e := checkText("params.admin.phone", p.Admin.Phone, 0, MaxPhoneLen, rulePhone); e != nil {
		return e
	}
	return checkText("params.admin.displayName", p.Admin.DisplayName, 0, MaxNameLen, ruleOptName)
}

func (p *CreateFirstOrderParams) Validate() *Error {
	if e := checkID("params.customer", p.Customer); e != nil {
		return e
	}
	if e := checkID("params.id", p.ID); e != nil {
		return e
	}
	if e := checkProduct("params.product", p.Product); e != nil {
		return e
	}
	if e := checkLicenses("params.licenses", p.Licenses); e != nil {
		return e
	}
	if p.Duration != Monthly && p.Duration != Yearly {
		return InvalidParams("params.duration", "params.duration "+ruleDuration)
	}
	return nil
}

func (p *CreateRenewalOrderParams) Validate() *Error {
	if e := checkID("params.parent", p.Parent); e != nil {
		return e
	}
	return checkID("params.id", p.ID)
}

func (p *OrderRef) Validate() *Error    { return checkID("params.id", p.ID) }
func (p *CustomerRef) Validate() *Error { return checkID("params.id", p.ID) }

func (p *UpdateOrderParams) Validate() *Error {
	if e := checkID("params.id", p.ID); e != nil {
		return e
	}
	if p.Licenses == nil && p.Product == nil {
		return InvalidParams("params", "params must carry licenses, product or both")
	}
	if p.Licenses != nil {
		if e := checkLicenses("params.licenses", *p.Licenses); e != nil {
			return e
		}
	}
	if p.Product != nil {
		return checkProduct("params.product", *p.Product)
	}
	return nil
}

func (p *CreateUserParams) Validate() *Error {
	if e := checkEmail("params.email", p.Email); e != nil {
		return e
	}
	p.Email = NormalizeEmail(p.Email)
	return checkText("params.displayName", p.DisplayName, 0, MaxNameLen, ruleOptName)
}

func (p *UserRef) Validate() *Error {
	if e := checkEmail("params.email", p.Email); e != nil {
		return e
	}
	p.Email = NormalizeEmail(p.Email)
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

// OrderScoped is the params of a call that concerns one order: its events
// name the order (webhooks), and are delivered in the order's order.
type OrderScoped interface {
	// OrderID is the first order's id: a renewal's parent.
	OrderID() string
}

func (p *CreateFirstOrderParams) OrderID() string   { return p.ID }
func (p *CreateRenewalOrderParams) OrderID() string { return p.Parent }
func (p *OrderRef) OrderID() string                 { return p.ID }
func (p *UpdateOrderParams) OrderID() string        { return p.ID }
