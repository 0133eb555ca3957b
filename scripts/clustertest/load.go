package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// resolveLimit bounds how long a flow repeats a call that got 202 before it
// leaves the result to the checks after the drain.
const resolveLimit = 15 * time.Second

// call is one HTTP call as the partner saw it.
type call struct {
	gw     int
	method string
	start  time.Time
	dur    time.Duration
	status int  // 0: no HTTP answer
	repeat bool // the same call again, after a 202
}

// good reports that the call was served: anything but a 503, a 202 or no
// answer.
func (c call) good() bool {
	return c.status != 0 && c.status != http.StatusServiceUnavailable && c.status != http.StatusAccepted
}

// mark is a moment of the scenario: a loss, a node brought back.
type mark struct {
	name string
	at   time.Time
}

// load runs partner flows through both gateways at a fixed rate and keeps
// every call and what each call must have done.
type load struct {
	cfg    *config
	st     *stack
	lim    *rate.Limiter
	client *http.Client
	seq    atomic.Int64
	wg     sync.WaitGroup
	model  *model

	mu       sync.Mutex
	calls    []call
	marks    []mark
	failures []string
}

func newLoad(cfg *config, st *stack) *load {
	return &load{cfg: cfg, st: st, model: newModel(),
		lim: rate.NewLimiter(rate.Limit(cfg.rate), 1),
		client: &http.Client{Timeout: cfg.rpcTimeout + 10*time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: cfg.flows, IdleConnTimeout: time.Minute}},
		marks: []mark{{"steady", time.Now()}}}
}

// run starts the flows; each starts a new flow when its last one ends, until
// ctx ends.
func (l *load) run(ctx context.Context) {
	for range l.cfg.flows {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				f := &flow{l: l, ctx: ctx, p: rand.IntN(len(l.st.partners))}
				if rand.IntN(3) == 0 {
					f.user()
				} else {
					f.order()
				}
			}
		}()
	}
}

// wait returns when every flow has ended.
func (l *load) wait() { l.wg.Wait() }

func (l *load) mark(name string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.marks = append(l.marks, mark{name, now})
	return now
}

func (l *load) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, fmt.Sprintf(format, args...))
}

// servingSince reports that the last n calls each gateway answered among
// those it got after t were all served.
func (l *load) servingSince(t time.Time, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for gw := range l.st.gateways {
		seen := 0
		for i := len(l.calls) - 1; i >= 0 && seen < n; i-- {
			c := l.calls[i]
			if c.gw != gw || c.start.Before(t) {
				continue
			}
			if !c.good() {
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

func (l *load) id(prefix string) string { return fmt.Sprintf("%s%d", prefix, l.seq.Add(1)) }

// answer is a gateway's answer to one call.
type answer struct {
	status int
	body   []byte
	code   string // error.code, when there is one
	rid    string // the X-Request-Id it was sent with
}

// send makes one call. It waits for the rate limiter unless repeat is set
// (repeats are paced by their own sleep).
func (l *load) send(ctx context.Context, p int, method string, params any, idemKey string, repeat bool) answer {
	if !repeat {
		if err := l.lim.Wait(ctx); err != nil {
			return answer{status: -1}
		}
	}
	gw := rand.IntN(len(l.st.gateways))
	body, _ := json.Marshal(map[string]any{"method": method, "params": params})
	req, _ := http.NewRequest(http.MethodPost, "http://"+l.st.gateways[gw].api+"/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", l.st.partners[p].key)
	a := answer{rid: l.id("rq-" + l.cfg.tag + "-")}
	req.Header.Set("X-Request-Id", a.rid)
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	c := call{gw: gw, method: method, start: time.Now(), repeat: repeat}
	resp, err := l.client.Do(req)
	if err == nil {
		a.status = resp.StatusCode
		a.body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			a.status = 0
		}
	}
	c.dur, c.status = time.Since(c.start), a.status
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
		l.fail("%s %s through gateway %d: no answer: %v", method, a.rid, gw+1, err)
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
	body []byte // of the 200
	by   string // the call that decided it: method, request id and status
}

// mutate makes a mutating call; a 202 of a keyed call is repeated with the
// same Idempotency-Key until its stored answer comes back.
func (l *load) mutate(ctx context.Context, p int, method string, params any) result {
	m, _ := protocol.Lookup(method)
	key := ""
	if m.Keyed() {
		key = l.id("k-" + l.cfg.tag + "-")
	}
	a := l.send(ctx, p, method, params, key, false)
	r := result{by: fmt.Sprintf("%s %s answered %d", method, a.rid, a.status)}
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
		l.fail("%s %s: unexpected %d %s: %s", method, a.rid, a.status, a.code, a.body)
		r.out = odd
	}
	return r
}

// resolve repeats a 202'd call until it is answered from its record. The
// repeats are not cut short by the end of the load.
func (l *load) resolve(p int, method string, params any, key string) (outcome, []byte) {
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
			l.fail("%s %s repeated after a 202: unexpected %d %s: %s", method, a.rid, a.status, a.code, a.body)
			return odd, nil
		}
	}
	return pending, nil
}

// read makes a read call of something that exists: a 404 is a failure.
func (l *load) read(ctx context.Context, p int, method string, params any) {
	a := l.send(ctx, p, method, params, "", false)
	switch a.status {
	case -1, http.StatusOK, http.StatusAccepted, http.StatusServiceUnavailable:
	default:
		l.fail("%s %s: unexpected %d %s: %s", method, a.rid, a.status, a.code, a.body)
	}
}

// flow is one partner's sequence of calls on its own new resources. A call
// that did not surely take effect (503, 202, anything odd) ends the flow, so
// the resource's final state tells whether that call did anything.
type flow struct {
	l   *load
	ctx context.Context
	p   int
}

// order: a customer and an order through its whole life.
func (f *flow) order() {
	l, p := f.l, f.p
	cid, oid := l.id("c"+l.cfg.tag+"-"), l.id("o"+l.cfg.tag+"-")
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
		{protocol.CancelOrder, protocol.OrderRef{ID: oid}, func(o *orderWant) { o.status = "cancelled" }},
	}
	for _, s := range steps {
		if s.method == protocol.GetOrder {
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
	email := l.id("u"+l.cfg.tag+"-") + "@example.com"
	r := l.mutate(f.ctx, p, protocol.CreateUser, protocol.CreateUserParams{Email: email, DisplayName: "User"})
	u := l.model.user(p, email, r)
	if r.out != done {
		return
	}
	if !l.model.reset(u, l.mutate(f.ctx, p, protocol.ResetUser, protocol.UserRef{Email: email})) {
		return
	}
	l.model.deleted(u, l.mutate(f.ctx, p, protocol.DeleteUser, protocol.UserRef{Email: email}))
}
