package protocol

// The API methods of SPEC section 2, one definition each, in the order of the
// SPEC: its name, its params type (whose fields carry their rules), whether it
// mutates and is replayed, its derived key and the order it concerns. The
// worker binds each to its handler (provision's routes); everything else reads
// the registry they make. A method is added here, with its handler, its
// section in README.md and its rows in the tests that list every method
// (docs/ARCHITECTURE.md, "How to add a method").
var (
	CreateCustomerDef = Define(Spec[CreateCustomerParams]{Name: CreateCustomer, Mutates: true, Replay: true,
		Key: func(p *CreateCustomerParams) string { return "customer:" + p.ID }, KeyField: "params.id"})
	CreateFirstOrderDef = Define(Spec[CreateFirstOrderParams]{Name: CreateFirstOrder, Mutates: true, Replay: true,
		Key: func(p *CreateFirstOrderParams) string { return "order:" + p.ID }, KeyField: "params.id",
		Order: func(p *CreateFirstOrderParams) string { return p.ID }})
	CreateRenewalOrderDef = Define(Spec[CreateRenewalOrderParams]{Name: CreateRenewalOrder, Mutates: true, Replay: true,
		Key: func(p *CreateRenewalOrderParams) string { return "order:" + p.ID }, KeyField: "params.id",
		// A renewal's events name the first order it renews.
		Order: func(p *CreateRenewalOrderParams) string { return p.Parent }})
	CancelOrderDef  = Define(Spec[OrderRef]{Name: CancelOrder, Mutates: true, Replay: true, Order: orderRefID})
	SuspendOrderDef = Define(Spec[OrderRef]{Name: SuspendOrder, Mutates: true, Replay: true, Order: orderRefID})
	ResumeOrderDef  = Define(Spec[OrderRef]{Name: ResumeOrder, Mutates: true, Replay: true, Order: orderRefID})
	UpdateOrderDef  = Define(Spec[UpdateOrderParams]{Name: UpdateOrder, Mutates: true, Replay: true,
		Order: func(p *UpdateOrderParams) string { return p.ID }})
	GetCustomerDef = Define(Spec[CustomerRef]{Name: GetCustomer})
	GetOrderDef    = Define(Spec[OrderRef]{Name: GetOrder, Order: orderRefID})
	CreateUserDef  = Define(Spec[CreateUserParams]{Name: CreateUser, Mutates: true, Replay: true,
		// The email is folded to lower case by its rule.
		Key: func(p *CreateUserParams) string { return "user:" + p.Email }, KeyField: "params.email"})
	DeleteUserDef = Define(Spec[UserRef]{Name: DeleteUser, Mutates: true, Replay: true})
	// resetUser is never replayed: its token is stored only as a hash, and a
	// stored response would keep it in clear.
	ResetUserDef = Define(Spec[UserRef]{Name: ResetUser, Mutates: true})
	// getRequest reads the ledger; like every read it writes no ledger row.
	GetRequestDef = Define(Spec[RequestRef]{Name: GetRequest})
	// The reads of reconciliation: lists by page and a batch of orders.
	ListCustomersDef = Define(Spec[ListCustomersParams]{Name: "listCustomers"})
	ListOrdersDef    = Define(Spec[ListOrdersParams]{Name: "listOrders"})
	ListUsersDef     = Define(Spec[ListUsersParams]{Name: "listUsers"})
	ListRequestsDef  = Define(Spec[ListRequestsParams]{Name: "listRequests"})
	GetOrdersDef     = Define(Spec[GetOrdersParams]{Name: "getOrders"})
	// Event history: listEvents reads; replayEvent makes the event due again
	// now (a command: it changes the outbox), its repeat with the same
	// Idempotency-Key answered from the record without sending again.
	ListEventsDef  = Define(Spec[ListEventsParams]{Name: "listEvents"})
	ReplayEventDef = Define(Spec[EventRef]{Name: "replayEvent", Mutates: true, Replay: true})
	// getPartner: the calling partner, as its key names it (the console's header).
	GetPartnerDef = Define(Spec[NoParams]{Name: "getPartner"})
)

func orderRefID(p *OrderRef) string { return p.ID }

// The names of the methods above, for the tests and tools that put a method
// on the wire. A new method needs none: its definition's Name serves.
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
