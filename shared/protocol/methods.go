package protocol

import "slices"

// The API methods of SPEC section 2. Their names appear here and in the
// worker's handler registrations only; everything else reads the registry.
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
	GetRequest         = "getRequest"
)

// Method is one API method: what the gateway's validation, the idempotency
// rules, the worker's mux and the metrics need to know of it.
type Method struct {
	// Name is the method's name on the wire, in the envelope and in the
	// AMQP message type.
	Name string
	// NewParams returns the method's empty typed params, which decode and
	// validate themselves.
	NewParams func() Params
	// Mutates reports that the call changes state. A read takes no
	// idempotency key and is never replayed.
	Mutates bool
	// Replay reports that a keyed call may be answered from its idempotency
	// record (SPEC section 3). resetUser is not: its token is stored only as a
	// hash, and a stored response would keep it in clear.
	Replay bool
	// DerivedKey is the idempotency key of a call that carries no
	// Idempotency-Key header, nil when the method has none (SPEC section 3:
	// only the create calls have one).
	DerivedKey func(Params) string
	// KeyField is the field a derived key is made of: a call that reuses it
	// with other params is a 409 already_exists naming it.
	KeyField string
}

// registry holds every method, in the order of the SPEC.
var registry = []Method{
	{Name: CreateCustomer, NewParams: func() Params { return new(CreateCustomerParams) },
		Mutates: true, Replay: true, KeyField: "params.id",
		DerivedKey: func(p Params) string { return "customer:" + p.(*CreateCustomerParams).ID }},
	{Name: CreateFirstOrder, NewParams: func() Params { return new(CreateFirstOrderParams) },
		Mutates: true, Replay: true, KeyField: "params.id",
		DerivedKey: func(p Params) string { return "order:" + p.(*CreateFirstOrderParams).ID }},
	{Name: CreateRenewalOrder, NewParams: func() Params { return new(CreateRenewalOrderParams) },
		Mutates: true, Replay: true, KeyField: "params.id",
		DerivedKey: func(p Params) string { return "order:" + p.(*CreateRenewalOrderParams).ID }},
	{Name: CancelOrder, NewParams: func() Params { return new(OrderRef) }, Mutates: true, Replay: true},
	{Name: SuspendOrder, NewParams: func() Params { return new(OrderRef) }, Mutates: true, Replay: true},
	{Name: ResumeOrder, NewParams: func() Params { return new(OrderRef) }, Mutates: true, Replay: true},
	{Name: UpdateOrder, NewParams: func() Params { return new(UpdateOrderParams) }, Mutates: true, Replay: true},
	{Name: GetCustomer, NewParams: func() Params { return new(CustomerRef) }},
	{Name: GetOrder, NewParams: func() Params { return new(OrderRef) }},
	{Name: CreateUser, NewParams: func() Params { return new(CreateUserParams) },
		Mutates: true, Replay: true, KeyField: "params.email",
		// The email is folded to lower case by validation.
		DerivedKey: func(p Params) string { return "user:" + p.(*CreateUserParams).Email }},
	{Name: DeleteUser, NewParams: func() Params { return new(UserRef) }, Mutates: true, Replay: true},
	{Name: ResetUser, NewParams: func() Params { return new(UserRef) }, Mutates: true},
	// getRequest reads the ledger; like every read it writes no ledger row.
	{Name: GetRequest, NewParams: func() Params { return new(RequestRef) }},
}

// byName indexes the registry.
var byName = func() map[string]*Method {
	m := make(map[string]*Method, len(registry))
	for i := range registry {
		m[registry[i].Name] = &registry[i]
	}
	return m
}()

// Lookup returns the method called name, or nil and false if there is none.
func Lookup(name string) (*Method, bool) {
	m, ok := byName[name]
	return m, ok
}

// Known reports whether name is an API method.
func Known(name string) bool {
	_, ok := byName[name]
	return ok
}

// Methods returns every method, in the order of the SPEC.
func Methods() []Method { return slices.Clone(registry) }

// Names returns the names of every method, in the order of the SPEC: the
// known values of the metrics' method label.
func Names() []string {
	names := make([]string, len(registry))
	for i, m := range registry {
		names[i] = m.Name
	}
	return names
}

// Keyed reports whether a call of m may take an idempotency key and be
// answered from its record.
func (m *Method) Keyed() bool { return m.Mutates && m.Replay }

// Key is the derived idempotency key of validated params p of m, or "" when
// m has none.
func (m *Method) Key(p Params) string {
	if m.DerivedKey == nil {
		return ""
	}
	return m.DerivedKey(p)
}
