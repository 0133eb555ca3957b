package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
	"github.com/oneoffice/provisioner/shared/testenv"
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
	unserved int // calls sent after the stop and answered before the next loss that were not served
}

// results are the figures of the run.
type results struct {
	cfg      partnerload.Flags
	members  int
	losses   []*loss
	sum      *partnerload.Summary
	checked  int
	notReady []string
}

// summarize computes the figures from the calls.
func (r *results) summarize(ld *partnerload.Load, gateways int) {
	r.sum = partnerload.Summarize(ld)
	calls := ld.Calls()
	for i, l := range r.losses {
		// A loss lasts until the next one: the calls it holds up while its
		// node comes back are its own.
		until := time.Now()
		if i+1 < len(r.losses) {
			until = r.losses[i+1].at
		}
		l.recovery, l.unserved = partnerload.Recovery(calls, l.at, l.at, until, gateways)
	}
}

// judge checks every call against PostgreSQL and the limits.
func (r *results) judge(ctx context.Context, st *partnerload.Stack, ld *partnerload.Load) error {
	r.summarize(ld, len(st.Gateways))
	ch, errs := partnerload.Judge(ctx, st.DB, ld, r.cfg.RPCTimeout)
	for i, l := range r.losses {
		if l.recovery < 0 {
			errs = append(errs, fmt.Errorf("loss %d: a gateway served nothing after it", i+1))
		} else if l.recovery > partnerload.MaxRecovery {
			errs = append(errs, fmt.Errorf("loss %d: serving again after %s, past %s", i+1, l.recovery, partnerload.MaxRecovery))
		}
	}
	r.checked = ch.Total
	return errors.Join(errs...)
}

func (r *results) print(w io.Writer, took time.Duration) {
	fmt.Fprintf(w, "\ncluster test: 3 RabbitMQ nodes, 2 gateways, 3 workers, %.0f calls/s offered, RPC_TIMEOUT %s\n", r.cfg.Rate, r.cfg.RPCTimeout)
	fmt.Fprintf(w, "command queue members: %d\n", r.members)
	if r.sum == nil {
		return
	}
	r.sum.Print(w, nil, nil)
	fmt.Fprintf(w, "slowest call: %s (limit RPC_TIMEOUT + %s = %s)\n", r.sum.Slowest.Round(time.Millisecond), partnerload.OverRPCTimeout, r.cfg.RPCTimeout+partnerload.OverRPCTimeout)
	for i, l := range r.losses {
		rec := "never"
		if l.recovery >= 0 {
			rec = l.recovery.Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "loss %d: %s %s (queue leader: %v, %d stack connections on it; stop took %s; new leader %s): "+
			"%d calls not served, serving again after %s (limit %s)\n",
			i+1, l.kind, l.node, l.leader, l.clients, l.down.Round(time.Millisecond), l.newLeader, l.unserved, rec, partnerload.MaxRecovery)
	}
	if len(r.notReady) > 0 {
		fmt.Fprintf(w, "/readyz not ready (process: time not ready): %s\n", strings.Join(r.notReady, ", "))
	}
	fmt.Fprintf(w, "effects checked in PostgreSQL and the ledger: %d; failures: %d\n", r.checked, r.sum.Failures)
	fmt.Fprintf(w, "total run time: %s\n", took.Round(time.Second))
}

// readyWatch samples every process's /readyz during the load: a worker must
// say not ready while it has no broker connection.
type readyWatch struct {
	procs []*testenv.Proc
	mu    sync.Mutex
	down  map[string]time.Duration
}

func newReadyWatch(procs []*testenv.Proc) *readyWatch {
	return &readyWatch{procs: procs, down: map[string]time.Duration{}}
}

const readyEvery = 250 * time.Millisecond

func (w *readyWatch) run(ctx context.Context) {
	t := time.NewTicker(readyEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range w.procs {
			if !p.Ready(ctx) {
				w.mu.Lock()
				w.down[p.Name] += readyEvery
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
		if d := w.down[p.Name]; d > 0 {
			out = append(out, fmt.Sprintf("%s: %s", p.Name, d))
		}
	}
	return out
}
