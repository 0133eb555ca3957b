package partnerload

import (
	"crypto/sha256"
	"encoding/json"
	"sync"
	"time"
)

// presence is whether a resource must exist after the drain.
type presence int

const (
	present presence = iota + 1
	absent
)

// ref names a resource of one partner (the index into stack.partners).
type ref struct {
	p  int
	id string
}

// customerWant is whether a customer must exist after the drain.
type customerWant struct {
	presence presence
	by       string    // the call that decided it
	at       time.Time // when it was sent: its phase counts the checks
}

// orderWant is what an order must look like after the drain.
type orderWant struct {
	presence presence
	by       string    // the last call that decided its state
	at       time.Time // when it was sent
	// known: the calls on it ended in a way that fixes its final state
	// (nothing odd happened); status, licenses, product and renewals are it.
	known    bool
	status   string
	licenses int
	product  string
	// termEnd is the end of the first term as createFirstOrder answered it
	// (Unix seconds), 0 if that call was answered 202.
	termEnd        int64
	renewals       []string   // renewals that took effect, in order
	absentRenewals []absentID // renewals answered 503
}

// absentID is a resource that must not exist, and the call that says so.
type absentID struct{ id, by string }

// userWant is what a consumer-tenant user must look like after the drain.
type userWant struct {
	presence presence
	by       string    // the last call that decided its state
	at       time.Time // when it was sent
	known    bool
	// tokenHash is the hash of the reset token last answered with 200, which
	// the row must hold; resetPending: a reset answered 202, so some token
	// must be stored.
	tokenHash    []byte
	resetPending bool
}

// model is what every call must have done, built from the answers.
type model struct {
	mu        sync.Mutex
	customers map[ref]customerWant
	orders    map[ref]*orderWant
	users     map[ref]*userWant
}

func newModel() *model {
	return &model{customers: map[ref]customerWant{}, orders: map[ref]*orderWant{}, users: map[ref]*userWant{}}
}

// presenceOf maps a create call's outcome; ok is false when it fixes nothing.
func presenceOf(out outcome) (presence, bool) {
	switch out {
	case done, pending:
		return present, true
	case notDone:
		return absent, true
	}
	return 0, false
}

func (m *model) customer(p int, id string, r result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if pr, ok := presenceOf(r.out); ok {
		m.customers[ref{p, id}] = customerWant{pr, r.by, r.at}
	}
}

// order records createFirstOrder; it returns nil when the outcome fixes
// nothing.
func (m *model) order(p int, id string, r result) *orderWant {
	pr, ok := presenceOf(r.out)
	if !ok {
		return nil
	}
	o := &orderWant{presence: pr, by: r.by, at: r.at, known: true, status: "active", licenses: 5, product: "oo-std"}
	if r.out == done {
		var got struct {
			TermEnd int64 `json:"termEnd"`
		}
		json.Unmarshal(r.body, &got)
		o.termEnd = got.TermEnd
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.orders[ref{p, id}] = o
	return o
}

// step records a mutation of o and reports whether the flow goes on: only
// after a 200. A 202 will take effect but ends the flow; a 503 ends it with
// the state as it was; anything odd leaves the final state unknown.
func (m *model) step(o *orderWant, r result, apply func(*orderWant)) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.out != stopped {
		o.by, o.at = r.by, r.at
	}
	switch r.out {
	case done:
		apply(o)
		return true
	case pending:
		apply(o)
	case odd:
		o.known = false
	}
	return false
}

func (m *model) absentRenewal(o *orderWant, id string, r result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o.absentRenewals = append(o.absentRenewals, absentID{id, r.by})
}

func (m *model) user(p int, email string, r result) *userWant {
	pr, ok := presenceOf(r.out)
	if !ok {
		return nil
	}
	u := &userWant{presence: pr, by: r.by, at: r.at, known: true}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[ref{p, email}] = u
	return u
}

// reset records resetUser and reports whether the flow goes on.
func (m *model) reset(u *userWant, r result) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.out != stopped {
		u.by, u.at = r.by, r.at
	}
	switch r.out {
	case done:
		var got struct {
			ResetToken string `json:"resetToken"`
		}
		json.Unmarshal(r.body, &got)
		h := sha256.Sum256([]byte(got.ResetToken))
		u.tokenHash = h[:]
		return true
	case pending:
		u.resetPending = true
	case odd:
		u.known = false
	}
	return false
}

func (m *model) deleted(u *userWant, r result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.out != stopped {
		u.by, u.at = r.by, r.at
	}
	switch r.out {
	case done, pending:
		u.presence = absent
	case odd:
		u.known = false
	}
}
