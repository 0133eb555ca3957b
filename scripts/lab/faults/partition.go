package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// Partitions: the gateway and one worker (hostedWorker) run each on a test
// host of its own (testenv.TestHost), reaching PostgreSQL, RabbitMQ and Redis
// over one link each. A partition fault takes one link's carrier away for
// cutFor under load, every packet either way dropped without RST or FIN,
// then brings it back. Root only: under CI a run without root fails, and
// elsewhere the partitions are left out with a line saying so.

// cutFor is how long a partition lasts.
const cutFor = 20 * time.Second

// maxHealed is how soon after a heal the gateways must serve again.
const maxHealed = 5 * time.Second

// hostedWorker is the worker on a test host; the other workers run on
// loopback, so that its commands have somewhere else to go.
const hostedWorker = "worker-3"

// partitionFaults are the partitions of make chaos.
var partitionFaults = []fault{
	partition("gateway", testenv.LinkRabbitMQ),
	partition(hostedWorker, testenv.LinkRabbitMQ),
	partition(hostedWorker, testenv.LinkPostgres),
	partition("gateway", testenv.LinkRedis),
	partition("gateway", testenv.LinkPostgres),
}

func isPartition(name string) bool { return strings.HasPrefix(name, "partition-") }

// partition cuts proc's link to dep for cutFor, then restores it.
func partition(proc, dep string) fault {
	who := proc
	if strings.HasPrefix(proc, "worker") {
		who = "worker"
	}
	return fault{name: "partition-" + who + "-" + dep, inject: func(ctx context.Context, r *run, fr *faultRun) error {
		h := r.st.Host(proc)
		if h == nil {
			return fmt.Errorf("%s runs on no test host", proc)
		}
		fr.cut = time.Now()
		if err := h.Cut(ctx, dep); err != nil {
			return err
		}
		partnerload.Sleep(ctx, cutFor)
		fr.healed = time.Now()
		fr.note = fmt.Sprintf("%s|%s carrier off %s", proc, dep, fr.healed.Sub(fr.cut).Round(100*time.Millisecond))
		// Restore with a context of its own: a link left cut would
		// outlive a run stopped meanwhile until teardown.
		return h.Restore(context.WithoutCancel(ctx), dep)
	}}
}

// wantPartitions says which processes run on test hosts: none when no
// partition is to run, and, without root outside CI, none with the
// partitions left out.
func (r *run) wantPartitions() ([]string, error) {
	any := false
	for _, f := range r.suite.faults {
		if isPartition(f.name) && (r.only == nil || r.only[f.name]) {
			any = true
		}
	}
	if !any {
		return nil, nil
	}
	if err := testenv.TestHostsUsable(); err != nil {
		if os.Getenv("CI") != "" {
			return nil, fmt.Errorf("CI: the partitions need test hosts: %w", err)
		}
		r.logf("partitions left out: %v", err)
		if r.only == nil {
			r.only = map[string]bool{}
			for _, f := range r.suite.faults {
				r.only[f.name] = true
			}
		}
		for _, f := range r.suite.faults {
			if isPartition(f.name) {
				delete(r.only, f.name)
			}
		}
		return nil, nil
	}
	return []string{"gateway", hostedWorker}, nil
}

// partitionFigures is what the calls of one partition's phase saw.
type partitionFigures struct {
	calls, ok, accepted, unavailable, other int
	pastDeadline, effectErrs, took503       int
	slowest503, slowest202, slowestCut      time.Duration
	servedWhileCut                          int
	firstServed                             time.Duration // from the heal to the first 200 to a call sent since, -1: none
}

// judgePartitions checks the targets of each partition: every gateway served
// again within maxHealed of the heal, and a 503 while cut was answered
// within a second.
func (r *run) judgePartitions() []error {
	var errs []error
	for _, f := range r.faults {
		if !isPartition(f.name) || f.err != nil {
			continue
		}
		if f.recovery < 0 || f.recovery > maxHealed {
			errs = append(errs, fmt.Errorf("%s: serving again %s after the heal, want within %s", f.name, f.recovery, maxHealed))
		}
	}
	return errs
}

var requestID = regexp.MustCompile(`rq-[a-z0-9]+-[0-9]+`)

func (r *run) partitionFigures(f *faultRun, effectErrs []error) partitionFigures {
	until := time.Now()
	for i, g := range r.faults {
		if g == f && i+1 < len(r.faults) {
			until = r.faults[i+1].at
		}
	}
	if len(r.faults) > 0 && r.faults[len(r.faults)-1] == f {
		for _, m := range r.ld.Marks() {
			if m.Name == "after" {
				until = m.At
			}
		}
	}
	limit := r.cfg.RPCTimeout + partnerload.OverRPCTimeout
	p := partitionFigures{firstServed: -1}
	ids := map[string]partnerload.Call{}
	for _, c := range r.ld.Calls() {
		if c.Start.Before(f.at) || !c.Start.Before(until) {
			continue
		}
		ids[c.RequestID] = c
		p.calls++
		switch c.Status {
		case http.StatusOK, http.StatusCreated:
			p.ok++
		case http.StatusAccepted:
			p.accepted++
		case http.StatusServiceUnavailable:
			p.unavailable++
		default:
			p.other++
		}
		if c.Dur > limit {
			p.pastDeadline++
		}
		end := c.Start.Add(c.Dur)
		if !c.Start.Before(f.cut) && c.Start.Before(f.healed) {
			p.slowestCut = max(p.slowestCut, c.Dur)
			switch {
			case c.Status == http.StatusServiceUnavailable:
				p.slowest503 = max(p.slowest503, c.Dur)
			case c.Status == http.StatusAccepted:
				p.slowest202 = max(p.slowest202, c.Dur)
			case c.Served():
				p.servedWhileCut++
			}
		}
		if !c.Start.Before(f.healed) && c.Status == http.StatusOK && (p.firstServed < 0 || end.Sub(f.healed) < p.firstServed) {
			p.firstServed = end.Sub(f.healed)
		}
	}
	for _, e := range effectErrs {
		for _, id := range requestID.FindAllString(e.Error(), -1) {
			if c, ok := ids[id]; ok {
				if c.Status == http.StatusServiceUnavailable {
					p.took503++
				} else {
					p.effectErrs++
				}
				break
			}
		}
	}
	return p
}

// reportPartitions prints one line per partition.
func (r *run) reportPartitions(w io.Writer) {
	header := false
	for _, f := range r.faults {
		if !isPartition(f.name) || f.cut.IsZero() {
			continue
		}
		if !header {
			fmt.Fprintf(w, "\npartitions (%s each; phase: from the cut to the next fault):\n", cutFor)
			fmt.Fprintf(w, "%-28s %6s %6s %5s %5s %5s %4s %7s %7s %10s %10s %10s %12s %13s\n", "partition", "calls", "200", "202", "503", "other",
				"lost", "503-eff", "past-dl", "max503-cut", "max202-cut", "served-cut", "first-200", "serving-again")
			header = true
		}
		p := r.partitionFigures(f, r.effectErrs)
		first := "none"
		if p.firstServed >= 0 {
			first = p.firstServed.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(w, "%-28s %6d %6d %5d %5d %5d %4d %7d %7d %10s %10s %10d %12s %13s\n", f.name, p.calls, p.ok, p.accepted, p.unavailable, p.other,
			p.effectErrs, p.took503, p.pastDeadline, p.slowest503.Round(time.Millisecond), p.slowest202.Round(time.Millisecond),
			p.servedWhileCut, first, f.recovery.Round(10*time.Millisecond))
	}
}
