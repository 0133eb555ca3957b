package protocol

import (
	"fmt"
	"reflect"
	"slices"
)

// Spec is what defines one API method with params type P.
type Spec[P any] struct {
	// Name is the method's name on the wire, in the envelope and in the
	// AMQP message type.
	Name string
	// Mutates reports that the call changes state. A read takes no
	// idempotency key, is never replayed and writes no ledger row.
	Mutates bool
	// Replay reports that a keyed call may be answered from its idempotency
	// record (SPEC section 3).
	Replay bool
	// Key is the idempotency key of a call that carries no Idempotency-Key
	// header, nil when the method has none (SPEC section 3: only the create
	// calls have one). KeyField is the field it is made of: a call that
	// reuses it with other params is a 409 already_exists naming it.
	Key      func(*P) string
	KeyField string
	// Order is the first order the call concerns, nil when it concerns
	// none: the ledger keeps it, webhook events name it and are delivered
	// in the order's order.
	Order func(*P) string
}

// Definition is a registered method with its params type: what the worker
// binds a handler of *P to, so that the compiler checks the two agree. Its
// Method is the untyped view the gateway, the idempotency rules and the
// metrics read.
type Definition[P any] struct {
	*Method
}

// Define registers a method and returns its definition. It is called once per
// method, by the package variables of methods.go; a definition that does not
// hold together (no name, a name defined twice, a key without its field, a
// key on a method never replayed, a params field without a rule) panics when
// the program starts.
func Define[P any](s Spec[P]) *Definition[P] {
	m := &Method{Name: s.Name, Mutates: s.Mutates, Replay: s.Replay, KeyField: s.KeyField,
		newParams: func() Params { return new(P) }, rules: readRules(reflect.TypeFor[P]())}
	if s.Key != nil {
		m.key = func(p Params) string { return s.Key(p.(*P)) }
	}
	if s.Order != nil {
		m.order = func(p Params) string { return s.Order(p.(*P)) }
	}
	switch {
	case m.Name == "" || byName[m.Name] != nil:
		panic(fmt.Sprintf("protocol: method %q is unnamed or defined twice", m.Name))
	case (s.Key == nil) != (s.KeyField == ""):
		panic(fmt.Sprintf("protocol: %s: a derived key and its field come together", m.Name))
	case s.Key != nil && !m.Keyed():
		panic(fmt.Sprintf("protocol: %s: a derived key on a method that is not keyed", m.Name))
	}
	registry = append(registry, m)
	byName[m.Name] = m
	return &Definition[P]{m}
}

// Method is one API method, untyped: what the gateway's validation, the
// idempotency rules, the worker and the metrics need to know of it.
type Method struct {
	Name     string
	Mutates  bool
	Replay   bool
	KeyField string

	newParams  func() Params
	rules      paramsRules
	key, order func(Params) string
}

// registry holds every method in the order of their definitions; byName
// indexes it.
var (
	registry []*Method
	byName   = map[string]*Method{}
)

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
func Methods() []*Method { return slices.Clone(registry) }

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
	if m.key == nil {
		return ""
	}
	return m.key(p)
}

// OrderID is the first order validated params p of m concern, or "" when m
// concerns no order or p is nil.
func (m *Method) OrderID(p Params) string {
	if m.order == nil || p == nil {
		return ""
	}
	return m.order(p)
}
