package protocol

import "testing"

// key is the derived key of params p of the method called name.
func key(name string, p Params) string {
	m, _ := Lookup(name)
	return m.Key(p)
}

func TestEveryMethodHasValidationCases(t *testing.T) {
	t.Parallel()
	accepted, refused := map[string]bool{}, map[string]bool{}
	for _, c := range decodeCases {
		if c.code == "" {
			accepted[c.method] = true
		} else {
			refused[c.method] = true
		}
	}
	for _, name := range Names() {
		if !accepted[name] || !refused[name] {
			t.Errorf("%s: decodeCases has accepted=%v refused=%v; give it at least one of each", name, accepted[name], refused[name])
		}
	}
}

func TestRegistryEntries(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, m := range Methods() {
		if m.Name == "" || seen[m.Name] {
			t.Errorf("method %q: empty or registered twice", m.Name)
		}
		seen[m.Name] = true
		if got, ok := Lookup(m.Name); !ok || got != m {
			t.Errorf("%s: Lookup does not find it", m.Name)
		}
	}
	if Known("dropTables") || !Known(CreateCustomer) {
		t.Error("Known")
	}
}

// TestDefineRefusesWhatDoesNotHoldTogether: a definition that could not be
// served panics when the program starts, before it registers anything.
func TestDefineRefusesWhatDoesNotHoldTogether(t *testing.T) {
	t.Parallel()
	type unruled struct {
		ID string `json:"id"`
	}
	type misruled struct {
		N int `json:"n" rule:"id"`
	}
	for name, define := range map[string]func(){
		"defined twice":     func() { Define(Spec[OrderRef]{Name: GetOrder}) },
		"unnamed":           func() { Define(Spec[OrderRef]{}) },
		"key without field": func() { Define(Spec[OrderRef]{Name: "x1", Mutates: true, Replay: true, Key: orderRefID}) },
		"key, not keyed":    func() { Define(Spec[OrderRef]{Name: "x2", Key: orderRefID, KeyField: "params.id"}) },
		"field, no rule":    func() { Define(Spec[unruled]{Name: "x3"}) },
		"text rule, an int": func() { Define(Spec[misruled]{Name: "x4"}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			define()
		}()
	}
	for _, n := range []string{"x1", "x2", "x3", "x4"} {
		if Known(n) {
			t.Errorf("%s registered by a definition that panicked", n)
		}
	}
}

// TestIdempotencyRules pins SPEC section 3: which calls take a key, which are
// replayed, and the derived keys of the create calls.
func TestIdempotencyRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		method, params, key string
		keyed               bool
	}{
		{CreateCustomer, `{"id":"ABC","name":"N","admin":{"email":"a@example.com"}}`, "customer:ABC", true},
		{CreateFirstOrder, `{"customer":"C","id":"O1","product":"oo-lite","licenses":1,"duration":"yearly"}`, "order:O1", true},
		{CreateRenewalOrder, `{"parent":"O1","id":"R1"}`, "order:R1", true},
		{CreateUser, `{"email":"Ann@Example.COM"}`, "user:ann@example.com", true},
		{CancelOrder, `{"id":"O1"}`, "", true},
		{SuspendOrder, `{"id":"O1"}`, "", true},
		{ResumeOrder, `{"id":"O1"}`, "", true},
		{UpdateOrder, `{"id":"O1","licenses":2}`, "", true},
		{DeleteUser, `{"email":"ann@example.com"}`, "", true},
		{ResetUser, `{"email":"ann@example.com"}`, "", false},
		{GetCustomer, `{"id":"ABC"}`, "", false},
		{GetOrder, `{"id":"O1"}`, "", false},
		{GetRequest, `{"id":"r-1"}`, "", false},
		{"listCustomers", `{}`, "", false},
		{"listOrders", `{"status":"active"}`, "", false},
		{"listUsers", `{}`, "", false},
		{"listRequests", `{"method":"cancelOrder"}`, "", false},
		{"getOrders", `{"ids":["O1"]}`, "", false},
		{"listEvents", `{"type":"command.failed"}`, "", false},
		{"getPartner", `{}`, "", false},
		{"replayEvent", `{"id":"msg_0b6f3c1e-8f4a-4f0e-9a51-2c4b8e1d7f30"}`, "", true},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.method] = true
		m, _ := Lookup(c.method)
		p, err := DecodeParams(c.method, []byte(c.params))
		if err != nil {
			t.Fatalf("%s: %v", c.method, err)
		}
		if got := m.Key(p); got != c.key || m.Keyed() != c.keyed {
			t.Errorf("%s: key %q keyed %v, want %q %v", c.method, got, m.Keyed(), c.key, c.keyed)
		}
	}
	for _, name := range Names() {
		if !covered[name] {
			t.Errorf("%s: no case here; give it one", name)
		}
	}
}
