// Package faults is the lab's fault runs: `lab chaos` (make chaos, chaos.go)
// and `lab cluster` (make cluster-test, cluster.go). Each brings up its own
// servers and a stack on them (testenv), runs partner-like flows of every
// method at a fixed rate (partnerload) through a steady phase, one phase per
// fault and a last steady phase, lets the command queue drain, and checks:
// every 200 or 202 took effect exactly once and every 503 took none (in the
// resources and the command ledger, from PostgreSQL), no call waited past
// RPC_TIMEOUT + 1s, and after each fault every gateway served again within
// 20s. It prints the figures per fault, names the failing call of any
// violation (with what the gateways logged about it) and fails then.
// Everything it started is removed on any exit.
package faults

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// suite is one fault run: its servers and stack, its faults, and the checks
// and figures of its own.
type suite struct {
	name  string
	rate  float64
	flows int
	// setup starts the servers and the stack on them (r.nodes, r.st).
	setup  func(ctx context.Context, r *run) error
	faults []fault
	// judge and report, when set, add the suite's own checks and lines.
	judge  func(ctx context.Context, r *run) []error
	report func(w io.Writer, r *run)
}

// fault is one thing that goes wrong under load.
type fault struct {
	name string
	// prepare, when set, runs before the fault's phase begins: what it
	// looks up is not part of the fault.
	prepare func(ctx context.Context, r *run, fr *faultRun) error
	// inject does it and returns once the fault is over (the server back,
	// the process continued, or, for a process or node lost, at once); it
	// may say what it did in fr.note.
	inject func(ctx context.Context, r *run, fr *faultRun) error
	// after, when set, runs once the gateways serve again: a lost worker
	// replaced, a lost node brought back.
	after func(ctx context.Context, r *run, fr *faultRun) error
	// fromStart times the recovery from the injection instead of from the
	// end of the fault: while a node is lost, the stack must serve.
	fromStart bool
}

// faultRun is what one fault did.
type faultRun struct {
	fault
	note string
	at   time.Time // injected
	back time.Time // over
	err  error
	// recovery: from at (fromStart) or back until the gateways served again
	// (the first served call after the last unserved one), -1 if they never
	// did; unserved: the calls of the phase that were not served.
	recovery time.Duration
	unserved int
	// cut and healed: when a partition's link was cut and restored.
	cut, healed time.Time
}

// run is one run of a suite.
type run struct {
	suite *suite
	cfg   partnerload.Flags
	only  map[string]bool // the faults to run; nil: all
	td    testenv.Teardown
	nodes []*testenv.RabbitNode
	vhost string
	st    *partnerload.Stack
	ld    *partnerload.Load
	logf  func(string, ...any)

	faults  []*faultRun
	sum     *partnerload.Summary
	checked int // effects checked
	replays int // keyed calls answered from the ledger after Redis lost their record
	// effectErrs are the effect checks that failed, each naming its call.
	effectErrs []error
	byPhase    map[string]int // of them, by phase
	notReady   []string

	// chaos: the private Redis and PostgreSQL, the poison published;
	// cluster: the command queue's members, the node lost last.
	redis   *testenv.RedisServer
	pg      *testenv.PostgresCluster
	poison  *poisonRun
	members int
	lost    *testenv.RabbitNode
}

// Run runs s with the command line args; it fails if a check does.
func (s *suite) Run(ctx context.Context, args []string) error {
	r := &run{suite: s, vhost: "oneoffice", logf: partnerload.Logger(s.name)}
	if err := r.parseFlags(args); err != nil {
		return err
	}
	started := time.Now()
	err := s.setup(ctx, r)
	if err == nil {
		err = r.drive(ctx)
	}
	if err != nil {
		r.explain(os.Stderr, err)
	}
	if terr := r.td.Run(3 * time.Minute); terr != nil {
		err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
	}
	r.print(os.Stdout, time.Since(started))
	if err != nil {
		return fmt.Errorf("FAIL: %w", err)
	}
	fmt.Printf("%s: PASS\n", s.name)
	return nil
}

func (r *run) parseFlags(args []string) error {
	var names []string
	for _, f := range r.suite.faults {
		names = append(names, f.name)
	}
	fs := flag.NewFlagSet(r.suite.name, flag.ContinueOnError)
	r.cfg.Register(fs, r.suite.name, r.suite.rate, r.suite.flows)
	only := fs.String("faults", "", "comma-separated faults to run, of "+strings.Join(names, ", ")+" (default all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *only != "" {
		r.only = map[string]bool{}
		for _, f := range strings.Split(*only, ",") {
			if !slices.Contains(names, f) {
				return fmt.Errorf("-faults: no fault %q (%s)", f, strings.Join(names, ", "))
			}
			r.only[f] = true
		}
	}
	if r.cfg.Phase < 4*time.Second {
		return fmt.Errorf("-phase %s: want 4s or more", r.cfg.Phase)
	}
	return r.cfg.Validate()
}

// drive runs the load through a steady phase, every fault and a last
// steady phase, then lets the queue drain and checks.
func (r *run) drive(ctx context.Context) error {
	r.ld = partnerload.New(r.st.Load)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	r.ld.Run(loadCtx)
	notReady := watchReady(loadCtx, slices.Concat(r.st.Gateways, r.st.Workers))
	partnerload.Sleep(ctx, r.cfg.Phase/2)
	var errs []error
	for _, f := range r.suite.faults {
		if ctx.Err() != nil {
			break
		}
		if r.only != nil && !r.only[f.name] {
			continue
		}
		fr := r.runFault(ctx, f)
		r.faults = append(r.faults, fr)
		if fr.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, fr.err))
		}
	}
	r.ld.Mark("after")
	partnerload.Sleep(ctx, r.cfg.Phase/2)
	stopLoad()
	r.ld.Wait()
	r.notReady = notReady()
	r.logf("load stopped: %d calls; draining the queue", len(r.ld.Calls()))
	if err := partnerload.Drain(ctx, partnerload.DrainLimit, func(ctx context.Context) (int, error) {
		q, err := r.queue(ctx, amqpx.Queue)
		return q.Messages + q.Unacked, err
	}); err != nil {
		return errors.Join(append(errs, err)...)
	}
	return errors.Join(append(errs, r.judge(ctx))...)
}

// runFault injects f in a phase of its own, waits until the gateways serve
// again (up to the limit and a little), runs f.after and lets the rest of
// the phase pass.
func (r *run) runFault(ctx context.Context, f fault) *faultRun {
	fr := &faultRun{fault: f}
	if f.prepare != nil {
		fr.err = f.prepare(ctx, r, fr)
	}
	fr.at = r.ld.Mark(f.name)
	r.logf("fault %s", f.name)
	if fr.err == nil {
		fr.err = f.inject(ctx, r, fr)
	}
	fr.back = time.Now()
	served := r.ld.AwaitServing(ctx, fr.back)
	r.logf("fault %s over after %s (%s), serving again: %v", f.name, fr.back.Sub(fr.at).Round(time.Millisecond), fr.note, served)
	if f.after != nil && fr.err == nil {
		fr.err = f.after(ctx, r, fr)
	}
	partnerload.Sleep(ctx, time.Until(fr.at.Add(r.cfg.Phase)))
	return fr
}

// judge checks the calls, the recovery from each fault and the suite's own.
func (r *run) judge(ctx context.Context) error {
	r.sum = partnerload.Summarize(r.ld)
	calls := r.ld.Calls()
	ch, errs := partnerload.Judge(ctx, r.st.DB, r.ld, r.cfg.RPCTimeout)
	for i, f := range r.faults {
		// A fault lasts until the next one: the calls it holds up while its
		// server comes back are its own.
		from, until := f.back, time.Now()
		if f.fromStart {
			from = f.at
		}
		if i+1 < len(r.faults) {
			until = r.faults[i+1].at
		}
		f.recovery, f.unserved = partnerload.Recovery(calls, f.at, from, until, len(r.st.APIs))
		switch {
		case f.recovery < 0:
			errs = append(errs, fmt.Errorf("%s: a gateway served nothing after it", f.name))
		case f.recovery > partnerload.MaxRecovery:
			errs = append(errs, fmt.Errorf("%s: serving again after %s, past %s", f.name, f.recovery, partnerload.MaxRecovery))
		}
	}
	r.checked, r.byPhase, r.replays, r.effectErrs = ch.Total, ch.ByPhase, ch.Replays, ch.Errs
	if r.suite.judge != nil {
		errs = append(errs, r.suite.judge(ctx, r)...)
	}
	return errors.Join(errs...)
}

func (r *run) print(w io.Writer, took time.Duration) {
	if r.st == nil {
		return
	}
	fmt.Fprintf(w, "\n%s: %d RabbitMQ node(s), %d gateway(s), %d workers, %d partners, %.0f calls/s offered, RPC_TIMEOUT %s\n",
		r.suite.name, len(r.nodes), len(r.st.Gateways), len(r.st.Workers), len(r.st.Load.Partners), r.cfg.Rate, r.cfg.RPCTimeout)
	if r.sum == nil {
		return
	}
	r.sum.Print(w, r.byPhase)
	slow := r.sum.Slowest
	fmt.Fprintf(w, "slowest call: %s, %s %s answered %d in %s (limit RPC_TIMEOUT + %s = %s)\n", slow.Dur.Round(time.Millisecond),
		slow.Method, slow.RequestID, slow.Status, partnerload.PhaseOf(r.ld.Marks(), slow.Start), partnerload.OverRPCTimeout, r.cfg.RPCTimeout+partnerload.OverRPCTimeout)
	for _, f := range r.faults {
		from := "it was over"
		if f.fromStart {
			from = "it began"
		}
		fmt.Fprintf(w, "%-17s %s; over after %s; %d calls not served; serving again %s after %s (limit %s)\n", f.name+":", f.note,
			f.back.Sub(f.at).Round(10*time.Millisecond), f.unserved, f.recovery.Round(time.Millisecond), from, partnerload.MaxRecovery)
	}
	if r.suite.report != nil {
		r.suite.report(w, r)
	}
	if len(r.notReady) > 0 {
		fmt.Fprintf(w, "/readyz not ready (process: time not ready): %s\n", strings.Join(r.notReady, ", "))
	}
	fmt.Fprintf(w, "effects checked in PostgreSQL and the ledger: %d; failures: %d\n", r.checked, r.sum.Failures)
	fmt.Fprintf(w, "total run time: %s\n", took.Round(time.Second))
}

// upStack brings up the suite's stack on srv with the RabbitMQ URL amqpURL.
func (r *run) upStack(ctx context.Context, srv testenv.Servers, sc testenv.StackConfig, dbConns int) (err error) {
	srv.Logf = r.logf
	sc.Name = r.suite.name
	if r.st, err = partnerload.UpStack(ctx, srv, sc, r.cfg, dbConns, &r.td); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	_, workers := r.st.Pids()
	r.logf("stack up: gateways on %s, worker pids %v, work directory %s", strings.Join(r.st.APIs, ", "), workers, r.st.Dir)
	return nil
}

// queue lists a queue of the stack's vhost, asked of a running node other
// than skip.
func (r *run) queue(ctx context.Context, name string, skip ...*testenv.RabbitNode) (testenv.QueueInfo, error) {
	n, err := r.anyUp(ctx, skip...)
	if err != nil {
		return testenv.QueueInfo{}, err
	}
	return n.Queue(ctx, r.vhost, name)
}

// anyUp returns a node that answers the CLI, other than skip.
func (r *run) anyUp(ctx context.Context, skip ...*testenv.RabbitNode) (*testenv.RabbitNode, error) {
	for _, n := range r.nodes {
		if !slices.Contains(skip, n) && n.Ctl(ctx, "-q", "ping") == nil {
			return n, nil
		}
	}
	return nil, errors.New("no RabbitMQ node answers")
}

// explain prints what the gateways logged about the calls a failure names
// (by request id), before teardown removes the logs.
func (r *run) explain(w io.Writer, err error) {
	ids := regexp.MustCompile(`rq-`+r.cfg.Tag+`-[0-9]+`).FindAllString(err.Error(), 20)
	if len(ids) == 0 || r.st == nil {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(r.st.Dir, "gateway*.log"))
	for _, path := range logs {
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, id := range ids {
				if strings.Contains(line, `"`+id+`"`) && strings.Contains(line, "WARN") {
					fmt.Fprintf(w, "%s: %s: %s\n", r.suite.name, filepath.Base(path), line)
				}
			}
		}
	}
}

// watchReady samples every process's /readyz until ctx ends (a worker must
// say not ready while it has no broker connection); the function it returns
// waits for that end and lists how long each process still running was not.
func watchReady(ctx context.Context, procs []*testenv.Proc) func() []string {
	const every = 250 * time.Millisecond
	down := make([]time.Duration, len(procs))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for i, p := range procs {
				if !p.Exited() && !p.Ready(ctx) {
					down[i] += every
				}
			}
		}
	}()
	return func() []string {
		<-done
		var out []string
		for i, p := range procs {
			if down[i] > 0 {
				out = append(out, fmt.Sprintf("%s: %s", p.Name, down[i]))
			}
		}
		return out
	}
}
