package protocol

import "strings"

// The API methods of SPEC section 2: the closed list used for routing and for
// metric labels.
const (
	CreateCustomer     = "createCustomer"
	CreateFirstOrder   = "createFirstOrder"
	CreateRenewalOrder = "createRenewalOrder"
	CancelOrder        = "cancelOrder"
	SuspendOrder       = "suspendOrder"
	ResumeOrder        = "resumeOrder"
	UpdateOrder        = "updateOrder"
	GetCustomer        = "getCustomer"
	GetOrder           = "getOrder"
	CreateUser         = "createUser"
	DeleteUser         = "deleteUser"
	ResetUser          = "resetUser"
)

// Methods lists every method, in the order of the SPEC.
var Methods = []string{
	CreateCustomer, CreateFirstOrder, CreateRenewalOrder, CancelOrder, SuspendOrder,
	ResumeOrder, UpdateOrder, GetCustomer, GetOrder, CreateUser, DeleteUser, ResetUser,
}

// Known reports whether method is one of Methods.
func Known(method string) bool {
	for _, m := range Methods {
		if m == method {
			return true
		}
	}
	return false
}

// Replayable reports whether a call of this method may be answered from the
// idempotency record. Reads are never replayed, and resetUser is not either: its
// token is stored only as a hash, so a stored response would keep it in clear.
func Replayable(method string) bool {
	switch method {
	case GetCustomer, GetOrder, ResetUser:
		return false
	}
	return true
}

// DerivedKey is the idempotency key a create call gets when it carries no
// Idempotency-Key header (SPEC section 3), or "" for the other methods.
func DerivedKey(p Params) string {
	switch v := p.(type) {
	case *CreateCustomerParams:
		return "customer:" + v.ID
	case *CreateFirstOrderParams:
		return "order:" + v.ID
	case *CreateRenewalOrderParams:
		return "order:" + v.ID
	case *CreateUserParams:
		return "user:" + strings.ToLower(v.Email)
	}
	return ""
}
