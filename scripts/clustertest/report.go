package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// loss is one node or app taken down under load.
type loss struct {
	kind      string // node or app
	node      string
	leader    bool // it led the command queue
	clients   int  // the stack's connections it held
	at        time.Time
	down      time.Duration // how long the stop command took
	newLeader string
	// recovery: from the stop until both gateways served again (the first
	// served call after the last unserved one), -1 if they never did.
	recovery time.Duration
	unserved int // calls sent after the stop and before the node came back that were not served
}

// results are the figures of the run.
type results struct {
	cfg      *config
	members  int
	losses   []*loss
	byPhase  map[string]map[int]int
	phases   []string
	byMethod map[string]int
	total    int
	repeats  int
	slowest  time.Duration
	checked  int
	notReady []string
	failures int
}

// summarize computes the figures from the calls.
func (r *results) summarize(ld *load) {
	ld.mu.Lock()
	calls := slices.Clone(ld.calls)
	marks := slices.Clone(ld.marks)
	r.failures = len(ld.failures)
	ld.mu.Unlock()
	sort.Slice(calls, func(i, j int) bool { return calls[i].start.Before(calls[j].start) })
	r.byPhase, r.byMethod = map[string]map[int]int{}, map[string]int{}
	for _, m := range marks {
		r.phases = append(r.phases, m.name)
	}
	for _, c := range calls {
		ph := phaseOf(marks, c.start)
		if r.byPhase[ph] == nil {
			r.byPhase[ph] = map[int]int{}
		}
		r.byPhase[ph][c.status]++
		r.byMethod[c.method]++
		r.total++
		if c.repeat {
			r.repeats++
		}
		r.slowest = max(r.slowest, c.dur)
	}
	for _, l := range r.losses {
		l.recovery, l.unserved = recovery(calls, l.at, nextMark(marks, l.at), len(ld.st.gateways))
	}
}

func phaseOf(marks []mark, t time.Time) string {
	ph := marks[0].name
	for _, m := range marks {
		if !t.Before(m.at) {
			ph = m.name
		}
	}
	return ph
}

func nextMark(marks []mark, t time.Time) time.Time {
	for _, m := range marks {
		if m.at.After(t) {
			return m.at
		}
	}
	return time.Now()
}

// recovery is, over the gateways, the longest time from at to the first
// served call after the last unserved one sent before until.
func recovery(calls []call, at, until time.Time, gateways int) (time.Duration, int) {
	worst, unserved := time.Duration(0), 0
	for gw := range gateways {
		var lastBad time.Time
		for _, c := range calls {
			if c.gw == gw && !c.start.Before(at) && c.start.Before(until) && !c.good() {
				lastBad = c.start
				unserved++
			}
		}
		from := at
		if !lastBad.IsZero() {
			from = lastBad
		}
		served := time.Time{}
		for _, c := range calls {
			if c.gw == gw && c.start.After(from) && c.good() {
				served = c.start
				break
			}
		}
		if served.IsZero() {
			return -1, unserved
		}
		if lastBad.IsZero() {
			continue // this gateway never stopped serving
		}
		worst = max(worst, served.Sub(at))
	}
	return worst, unserved
}

func (r *results) print(w io.Writer, took time.Duration) {
	fmt.Fprintf(w, "\ncluster test: 3 RabbitMQ nodes, 2 gateways, 3 workers, %.0f calls/s offered, RPC_TIMEOUT %s\n", r.cfg.rate, r.cfg.rpcTimeout)
	fmt.Fprintf(w, "command queue members: %d\n", r.members)
	codes := map[int]bool{}
	for _, m := range r.byPhase {
		for code := range m {
			codes[code] = true
		}
	}
	var cs []int
	for code := range codes {
		cs = append(cs, code)
	}
	slices.Sort(cs)
	fmt.Fprintf(w, "\n%-12s %7s", "phase", "calls")
	for _, code := range cs {
		fmt.Fprintf(w, " %6s", statusName(code))
	}
	fmt.Fprintln(w)
	for _, ph := range r.phases {
		m := r.byPhase[ph]
		n := 0
		for _, v := range m {
			n += v
		}
		fmt.Fprintf(w, "%-12s %7d", ph, n)
		for _, code := range cs {
			fmt.Fprintf(w, " %6d", m[code])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%-12s %7d", "total", r.total)
	for _, code := range cs {
		n := 0
		for _, m := range r.byPhase {
			n += m[code]
		}
		fmt.Fprintf(w, " %6d", n)
	}
	fmt.Fprintln(w)
	var ms []string
	for m, n := range r.byMethod {
		ms = append(ms, fmt.Sprintf("%s %d", m, n))
	}
	slices.Sort(ms)
	fmt.Fprintf(w, "\ncalls: %d (%d of them repeats of a 202'd call); by method: %s\n", r.total, r.repeats, strings.Join(ms, ", "))
	fmt.Fprintf(w, "slowest call: %s (limit RPC_TIMEOUT + %s = %s)\n", r.slowest.Round(time.Millisecond), overRPCTimeout, r.cfg.rpcTimeout+overRPCTimeout)
	for i, l := range r.losses {
		rec := "never"
		if l.recovery >= 0 {
			rec = l.recovery.Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "loss %d: %s %s (queue leader: %v, %d stack connections on it; stop took %s; new leader %s): "+
			"%d calls not served, serving again after %s (limit %s)\n",
			i+1, l.kind, l.node, l.leader, l.clients, l.down.Round(time.Millisecond), l.newLeader, l.unserved, rec, maxRecovery)
	}
	if len(r.notReady) > 0 {
		fmt.Fprintf(w, "/readyz not ready (process: time not ready): %s\n", strings.Join(r.notReady, ", "))
	}
	fmt.Fprintf(w, "effects checked in PostgreSQL: %d; failures: %d\n", r.checked, r.failures)
	fmt.Fprintf(w, "total run time: %s\n", took.Round(time.Second))
}

func statusName(code int) string {
	if code == 0 {
		return "none"
	}
	return fmt.Sprint(code)
}

// readyWatch samples every process's /readyz during the load: a worker must
// say not ready while it has no broker connection.
type readyWatch struct {
	procs []*proc
	mu    sync.Mutex
	down  map[string]time.Duration
}

func newReadyWatch(st *stack) *readyWatch {
	return &readyWatch{procs: append(append([]*proc{}, st.gateways...), st.workers...), down: map[string]time.Duration{}}
}

const readyEvery = 250 * time.Millisecond

func (w *readyWatch) run(ctx context.Context) {
	client := &http.Client{Timeout: time.Second}
	t := time.NewTicker(readyEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range w.procs {
			if !ready(client, p.metrics) {
				w.mu.Lock()
				w.down[p.name] += readyEvery
				w.mu.Unlock()
			}
		}
	}
}

func (w *readyWatch) summary() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, p := range w.procs {
		if d := w.down[p.name]; d > 0 {
			out = append(out, fmt.Sprintf("%s: %s", p.name, d))
		}
	}
	return out
}
