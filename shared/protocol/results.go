package protocol

import "reflect"

// The results of the methods as partners receive them (SPEC section 2): the
// shapes the OpenAPI document states and the end-to-end tests hold every
// answer to. The worker writes its own structs; a field it adds or drops
// here fails those tests until both agree. Tags: `json` as the wire names
// it (omitempty: the field may be absent), `enum` the values a string takes,
// `doc` what it means.

// Customer is the answer of createCustomer and getCustomer.
type Customer struct {
	ID        int64  `json:"id" doc:"the customer's number among the partner's customers, from 1"`
	RemoteID  string `json:"remoteId" doc:"the partner's own id of the customer"`
	Name      string `json:"name"`
	Partner   int64  `json:"partner" doc:"the calling partner's internal id"`
	CreatedAt int64  `json:"createdAt" doc:"Unix seconds"`
	IsActive  bool   `json:"isActive"`
	Admin     Admin  `json:"admin"`
}

// Order is the answer of every order method.
type Order struct {
	ID        string    `json:"id" doc:"the first order's id"`
	Customer  string    `json:"customer"`
	Product   string    `json:"product" enum:"products"`
	Licenses  int       `json:"licenses"`
	Duration  string    `json:"duration" enum:"monthly,yearly"`
	Status    string    `json:"status" enum:"active,suspended,cancelled,expired"`
	TermStart int64     `json:"termStart" doc:"Unix seconds: the start of the term in force"`
	TermEnd   int64     `json:"termEnd" doc:"Unix seconds: the end of the last term paid for"`
	CreatedAt int64     `json:"createdAt"`
	UpdatedAt int64     `json:"updatedAt"`
	Renewals  []Renewal `json:"renewals" doc:"oldest first"`
}

// Renewal is one renewal of an order.
type Renewal struct {
	ID        string `json:"id"`
	TermStart int64  `json:"termStart"`
	TermEnd   int64  `json:"termEnd"`
	CreatedAt int64  `json:"createdAt"`
}

// User is a user of the partner's consumer tenant.
type User struct {
	Email       string `json:"email"`
	DisplayName string `json:"displayName"`
	CreatedAt   int64  `json:"createdAt"`
	IsActive    bool   `json:"isActive"`
}

// DeletedUser is the answer of deleteUser.
type DeletedUser struct {
	Email   string `json:"email"`
	Deleted bool   `json:"deleted"`
}

// ResetToken is the answer of resetUser.
type ResetToken struct {
	Email      string `json:"email"`
	ResetToken string `json:"resetToken" doc:"one-time password reset token for the partner to deliver; only its hash is kept"`
	ExpiresAt  int64  `json:"expiresAt" doc:"Unix seconds"`
}

// Request is one of the partner's calls as getRequest shows it.
type Request struct {
	RequestID   string           `json:"requestId"`
	Method      string           `json:"method"`
	Status      string           `json:"status" enum:"pending,succeeded,failed"`
	Response    *RequestResponse `json:"response" doc:"null while pending"`
	CreatedAt   int64            `json:"createdAt"`
	CompletedAt *int64           `json:"completedAt" doc:"null while pending"`
	TraceID     *string          `json:"traceId,omitempty" doc:"the W3C trace id the call ran under (32 hex digits); absent while pending"`
}

// RequestResponse is the answer a call was given.
type RequestResponse struct {
	Status int `json:"status" doc:"the HTTP status"`
	Body   any `json:"body" doc:"the response body: the method's result or an error body"`
}

// The pages of the lists (SPEC section 2, "Lists and batch reads").
type (
	CustomerPage struct {
		Data       []Customer `json:"data"`
		NextCursor *string    `json:"nextCursor" doc:"the cursor of the next page; null on the last"`
	}
	OrderPage struct {
		Data       []Order `json:"data"`
		NextCursor *string `json:"nextCursor" doc:"the cursor of the next page; null on the last"`
	}
	UserPage struct {
		Data       []User  `json:"data"`
		NextCursor *string `json:"nextCursor" doc:"the cursor of the next page; null on the last"`
	}
	RequestPage struct {
		Data       []Request `json:"data"`
		NextCursor *string   `json:"nextCursor" doc:"the cursor of the next page; null on the last"`
	}
	EventPage struct {
		Data       []Event `json:"data"`
		NextCursor *string `json:"nextCursor" doc:"the cursor of the next page; null on the last"`
	}
	// Orders is the answer of getOrders.
	Orders struct {
		Data    []Order  `json:"data"`
		Missing []string `json:"missing" doc:"the ids asked for that name no order of the partner"`
	}
)

// Event is one of the partner's webhook events as listEvents shows it.
type Event struct {
	ID         string    `json:"id" doc:"the webhook-id, the same on every attempt and replay"`
	Type       string    `json:"type" enum:"command.succeeded,command.failed"`
	RequestID  *string   `json:"requestId" doc:"the request id of the call the event tells of"`
	OrderID    *string   `json:"orderId" doc:"the order the call concerns, when it concerns one"`
	OccurredAt int64     `json:"occurredAt" doc:"Unix seconds: when the call completed"`
	Status     string    `json:"status" enum:"pending,delivered,failed" doc:"pending: to be sent (again); delivered: an attempt got a 2xx; failed: retries ran out or the endpoint answered 410"`
	Payload    any       `json:"payload" doc:"the event's body, as signed and sent"`
	Attempts   []Attempt `json:"attempts" doc:"every delivery attempt, oldest first"`
}

// Attempt is one delivery attempt of an event.
type Attempt struct {
	At         int64   `json:"at" doc:"Unix seconds: when the attempt started"`
	Status     *int    `json:"status" doc:"the endpoint's HTTP status; null when none came (unreachable, timed out, refused)"`
	DurationMs int64   `json:"durationMs"`
	Error      *string `json:"error,omitempty" doc:"why the attempt failed"`
}

// Partner is the answer of getPartner: the calling partner.
type Partner struct {
	ID   int64  `json:"id" doc:"the partner's internal id, as partner in a Customer"`
	Name string `json:"name" doc:"the partner's name, as the operator set it"`
}

// Replayed is the answer of replayEvent.
type Replayed struct {
	ID       string `json:"id" doc:"the event's webhook-id"`
	Replayed bool   `json:"replayed" doc:"always true: the event is due now, committed to the outbox that the dispatchers send"`
	Status   string `json:"status" enum:"pending"`
	QueuedAt int64  `json:"queuedAt" doc:"Unix seconds: when it became due; its attempt shows in listEvents with at >= queuedAt"`
}

// results holds the result of each method, by name. A name not (yet)
// defined in methods.go is never looked up.
var results = map[string]any{
	CreateCustomer:     Customer{},
	GetCustomer:        Customer{},
	CreateFirstOrder:   Order{},
	CreateRenewalOrder: Order{},
	CancelOrder:        Order{},
	SuspendOrder:       Order{},
	ResumeOrder:        Order{},
	UpdateOrder:        Order{},
	GetOrder:           Order{},
	CreateUser:         User{},
	DeleteUser:         DeletedUser{},
	ResetUser:          ResetToken{},
	GetRequest:         Request{},
	"listCustomers":    CustomerPage{},
	"listOrders":       OrderPage{},
	"listUsers":        UserPage{},
	"listRequests":     RequestPage{},
	"getOrders":        Orders{},
	"listEvents":       EventPage{},
	"replayEvent":      Replayed{},
	"getPartner":       Partner{},
}

// Result is the type of m's answer of status 200, or nil when none is
// declared (a test fails on that).
func (m *Method) Result() reflect.Type {
	r, ok := results[m.Name]
	if !ok {
		return nil
	}
	return reflect.TypeOf(r)
}

// ParamsType is the struct type of m's params.
func (m *Method) ParamsType() reflect.Type { return reflect.TypeOf(m.newParams()).Elem() }

// CrossChecked reports whether m's params have a rule across their fields
// (a check method), which their fields' rules do not tell.
func (m *Method) CrossChecked() bool {
	_, ok := m.newParams().(crossChecker)
	return ok
}

// RuleText is what a partner reads after a field's name when its value
// breaks the rule called name, and whether there is such a rule.
func RuleText(name string) (string, bool) {
	r, ok := rules[name]
	return r.must, ok
}
