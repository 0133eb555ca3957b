// Package partnerload runs partner-like flows of every API method through
// one or more gateways at a fixed rate, keeps every call as the partner saw
// it and what each answer says must have happened, and afterwards checks
// that against PostgreSQL and the command ledger. make cluster-test
// (lab cluster) and make chaos (lab chaos) run on it.
package partnerload

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// resolveLimit bounds how long a flow repeats a call that got 202 before it
// leaves the result to the checks after the drain.
const resolveLimit = 15 * time.Second

// Partner is one partner of the stack under load.
type Partner struct {
	Key string // its API key
	ID  int64  // partners.id, for the checks
}

// Config is the load to run.
type Config struct {
	// Tag is in every id and request id the load makes, so a failure names
	// calls that can be found in the logs (lower-case letters and digits).
	Tag string
	// Gateways are the host:port of each gateway's API; each call goes to
	// one of them at random.
	Gateways []string
	// Partners are the partners whose keys the flows use, at random.
	Partners []Partner
	// Rate is the calls per second over all gateways (repeats of a 202'd
	// call are paced apart from it).
	Rate float64
	// Flows is how many partner flows run at once.
	Flows int
	// RPCTimeout is the gateways' RPC_TIMEOUT: the HTTP client waits 10s
	// past it, so a call that waits too long is seen and counted.
	RPCTimeout time.Duration
}

// Call is one HTTP call as the partner saw it.
type Call struct {
	Gateway   int // index into Config.Gateways
	Partner   int // index into Config.Partners
	Method    string
	RequestID string // the X-Request-Id it was sent with
	Key       string // the Idempotency-Key it was sent with, if any
	Start     time.Time
	Dur       time.Duration
	Status    int  // 0: no HTTP answer
	Repeat    bool // the same call again, after a 202
}

// Served reports that the call was served: anything but a 503, a 202 or no
// answer.
func (c Call) Served() bool {
	return c.Status != 0 && c.Status != http.StatusServiceUnavailable && c.Status != http.StatusAccepted
}

// Mark is a moment of the scenario (a fault, its undoing); the calls started
// from it until the next one are its phase.
type Mark struct {
	Name string
	At   time.Time
}

// Load runs partner flows at a fixed rate and keeps every call and what
// each call must have done.
type Load struct {
	cfg    Config
	lim    *rate.Limiter
	client *http.Client
	seq    atomic.Int64
	wg     sync.WaitGroup
	model  *model

	mu       sync.Mutex
	calls    []Call
	marks    []Mark
	failures []string
}

// New returns a load of cfg, not started; its first phase is "steady".
func New(cfg Config) *Load {
	return &Load{cfg: cfg, model: newModel(),
		lim: rate.NewLimiter(rate.Limit(cfg.Rate), 1),
		client: &http.Client{Timeout: cfg.RPCTimeout + 10*time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Flows, IdleConnTimeout: time.Minute}},
		marks: []Mark{{"steady", time.Now()}}}
}

// Run starts the flows and returns; each flow starts a new one when its
// last one ends, until ctx ends. Wait waits for them.
func (l *Load) Run(ctx context.Context) {
	for range l.cfg.Flows {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				f := &flow{l: l, ctx: ctx, p: rand.IntN(len(l.cfg.Partners))}
				if rand.IntN(3) == 0 {
					f.user()
				} else {
					f.order()
				}
			}
		}()
	}
}

// Wait returns when every flow has ended (repeats of a 202'd call included).
func (l *Load) Wait() { l.wg.Wait() }

// Mark starts a phase called name now and returns its time.
func (l *Load) Mark(name string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.marks = append(l.marks, Mark{name, now})
	return now
}

// Fail records a failure of the run that the load itself saw.
func (l *Load) Fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, fmt.Sprintf(format, args...))
}

// Calls returns every call so far, in the order they started.
func (l *Load) Calls() []Call {
	l.mu.Lock()
	calls := slices.Clone(l.calls)
	l.mu.Unlock()
	slices.SortFunc(calls, func(a, b Call) int { return a.Start.Compare(b.Start) })
	return calls
}

// Marks returns the phases so far, in order.
func (l *Load) Marks() []Mark {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.marks)
}

// Failures returns what Fail recorded, the unexpected answers included.
func (l *Load) Failures() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.failures)
}

// ServingSince reports that the last n calls each gateway answered among
// those it got after t were all served.
func (l *Load) ServingSince(t time.Time, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for gw := range l.cfg.Gateways {
		seen := 0
		for i := len(l.calls) - 1; i >= 0 && seen < n; i-- {
			c := l.calls[i]
			if c.Gateway != gw || c.Start.Before(t) {
				continue
			}
			if !c.Served() {
				return false
			}
			seen++
		}
		if seen < n {
			return false
		}
	}
	return true
}

func (l *Load) id(prefix string) string { return fmt.Sprintf("%s%d", prefix, l.seq.Add(1)) }

// answer is a gateway's answer to one call.
type answer struct {
	status int
	body   []byte
	code   string // error.code, when there is one
	rid    string // the X-Request-Id it was sent with
	at     time.Time
}

// send makes one call. It waits for the rate limiter unless repeat is set
// (repeats are paced by their own sleep).
func (l *Load) send(ctx context.Context, p int, method string, params any, idemKey string, repeat bool) answer {
	if !repeat {
		if err := l.lim.Wait(ctx); err != nil {
			return answer{status: -1}
		}
	}
	gw := rand.IntN(len(l.cfg.Gateways))
	body, _ := json.Marshal(map[string]any{"method": method, "params": params})
	req, _ := http.NewRequest(http.MethodPost, "http://"+l.cfg.Gateways[gw]+"/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", l.cfg.Partners[p].Key)
	a := answer{rid: l.id("rq-" + l.cfg.Tag + "-")}
	req.Header.Set("X-Request-Id", a.rid)
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	c := Call{Gateway: gw, Partner: p, Method: method, RequestID: a.rid, Key: idemKey, Start: time.Now(), Repeat: repeat}
	a.at = c.Start
	resp, err := l.client.Do(req)
	if err == nil {
		a.status = resp.StatusCode
		a.body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			a.status = 0
		}
	}
	c.Dur, c.Status = time.Since(c.Start), a.status
	if a.status >= 300 && a.status != http.StatusAccepted {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		json.Unmarshal(a.body, &e)
		a.code = e.Error.Code
	}
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
	if err != nil {
		l.Fail("%s %s through gateway %d: no answer: %v", method, a.rid, gw+1, err)
	}
	return a
}

// outcome is what a mutating call is known to have done.
type outcome int

const (
	done    outcome = iota // 200: the effect holds
	notDone                // 503: nothing was done
	pending                // 202 (not resolved by repeating): the effect will hold
	odd                    // anything else: reported as a failure, not checked
	stopped                // the load ended before the call was sent
)

// result is what one mutating call did, as far as its answers tell.
type result struct {
	out  outcome
	body []byte    // of the 200
	by   string    // the call that decided it: method, request id and status
	at   time.Time // when that call was sent
}

// mutate makes a mutating call; a 202 of a keyed call is repeated with the
// same Idempotency-Key until its stored answer comes back.
func (l *Load) mutate(ctx context.Context, p int, method string, params any) result {
	m, _ := protocol.Lookup(method)
	key := ""
	if m.Keyed() {
		key = l.id("k-" + l.cfg.Tag + "-")
	}
	a := l.send(ctx, p, method, params, key, false)
	r := result{by: fmt.Sprintf("%s %s answered %d", method, a.rid, a.status), at: a.at}
	switch a.status {
	case -1:
		r.out = stopped
	case http.StatusOK:
		r.out, r.body = done, a.body
	case http.StatusServiceUnavailable:
		r.out = notDone
	case http.StatusAccepted:
		r.out = pending
		if key != "" {
			r.out, r.body = l.resolve(p, method, params, key)
		}
	default:
		l.Fail("%s %s: unexpected %d %s: %s", method, a.rid, a.status, a.code, a.body)
		r.out = odd
	}
	return r
}

// resolve repeats a 202'd call until it is answered from its record. The
// repeats are not cut short by the end of the load.
func (l *Load) resolve(p int, method string, params any, key string) (outcome, []byte) {
	deadline := time.Now().Add(resolveLimit)
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		a := l.send(context.Background(), p, method, params, key, true)
		switch {
		case a.status == http.StatusOK:
			return done, a.body
		case a.status == http.StatusConflict && a.code == protocol.CodeRequestInProgress,
			a.status == http.StatusServiceUnavailable, a.status == http.StatusAccepted:
		default:
			l.Fail("%s %s repeated after a 202: unexpected %d %s: %s", method, a.rid, a.status, a.code, a.body)
			return odd, nil
		}
	}
	return pending, nil
}

// read makes a read call of something that exists: a 404 is a failure.
func (l *Load) read(ctx context.Context, p int, method string, params any) {
	a := l.send(ctx, p, method, params, "", false)
	switch a.status {
	case -1, http.StatusOK, http.StatusAccepted, http.StatusServiceUnavailable:
	default:
		l.Fail("%s %s: unexpected %d %s: %s", method, a.rid, a.status, a.code, a.body)
	}
}

// flow is one partner's sequence of calls on its own new resources. A call
// that did not surely take effect (503, 202, anything odd) ends the flow, so
// the resource's final state tells whether that call did anything.
type flow struct {
	l   *Load
	ctx context.Context
	p   int
}

// order: a customer and an order through its whole life.
func (f *flow) order() {
	l, p := f.l, f.p
	cid, oid := l.id("c"+l.cfg.Tag+"-"), l.id("o"+l.cfg.Tag+"-")
	r := l.mutate(f.ctx, p, protocol.CreateCustomer, protocol.CreateCustomerParams{ID: cid, Name: "Company " + cid,
		Admin: &protocol.Admin{Email: "admin@" + cid + ".example.com"}})
	l.model.customer(p, cid, r)
	if r.out != done {
		return
	}
	l.read(f.ctx, p, protocol.GetCustomer, protocol.CustomerRef{ID: cid})
	r = l.mutate(f.ctx, p, protocol.CreateFirstOrder, protocol.CreateFirstOrderParams{Customer: cid, ID: oid,
		Product: "oo-std", Licenses: 5, Duration: protocol.Monthly})
	o := l.model.order(p, oid, r)
	if r.out != done {
		return
	}
	lic7, ent := 7, "oo-ent"
	steps := []struct {
		method string
		params any
		apply  func(*orderWant)
	}{
		{protocol.UpdateOrder, protocol.UpdateOrderParams{ID: oid, Licenses: &lic7}, func(o *orderWant) { o.licenses = 7 }},
		{protocol.SuspendOrder, protocol.OrderRef{ID: oid}, func(o *orderWant) { o.status = "suspended" }},
		{protocol.ResumeOrder, protocol.OrderRef{ID: oid}, func(o *orderWant) { o.status = "active" }},
		{protocol.CreateRenewalOrder, protocol.CreateRenewalOrderParams{Parent: oid, ID: oid + "-r1"}, nil},
		{protocol.CreateRenewalOrder, protocol.CreateRenewalOrderParams{Parent: oid, ID: oid + "-r2"}, nil},
		{protocol.UpdateOrder, protocol.UpdateOrderParams{ID: oid, Product: &ent}, func(o *orderWant) { o.product = ent }},
		{protocol.GetOrder, protocol.OrderRef{ID: oid}, nil},
		// Reconciliation reads: the order by a renewal id among others, and
		// the customer's page of orders.
		{protocol.GetOrdersDef.Name, protocol.GetOrdersParams{IDs: []string{oid + "-r1", "none-" + oid}}, nil},
		{protocol.ListOrdersDef.Name, protocol.ListOrdersParams{Customer: &cid}, nil},
		{protocol.CancelOrder, protocol.OrderRef{ID: oid}, func(o *orderWant) { o.status = "cancelled" }},
	}
	for _, s := range steps {
		if m, _ := protocol.Lookup(s.method); !m.Mutates {
			l.read(f.ctx, p, s.method, s.params)
			continue
		}
		r := l.mutate(f.ctx, p, s.method, s.params)
		apply := s.apply
		if s.method == protocol.CreateRenewalOrder {
			rid := s.params.(protocol.CreateRenewalOrderParams).ID
			apply = func(o *orderWant) { o.renewals = append(o.renewals, rid) }
			if r.out == notDone {
				l.model.absentRenewal(o, rid, r)
			}
		}
		if !l.model.step(o, r, apply) {
			return
		}
	}
}

// user: a consumer-tenant user created, reset and deleted.
func (f *flow) user() {
	l, p := f.l, f.p
	email := l.id("u"+l.cfg.Tag+"-") + "@example.com"
	r := l.mutate(f.ctx, p, protocol.CreateUser, protocol.CreateUserParams{Email: email, DisplayName: "User"})
	u := l.model.user(p, email, r)
	if r.out != done {
		return
	}
	if !l.model.reset(u, l.mutate(f.ctx, p, protocol.ResetUser, protocol.UserRef{Email: email})) {
		return
	}
	l.model.deleted(u, l.mutate(f.ctx, p, protocol.DeleteUser, protocol.UserRef{Email: email}))
	l.read(f.ctx, p, protocol.ListUsersDef.Name, protocol.ListUsersParams{})
}
