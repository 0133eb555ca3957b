package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// PeerTargets is the provisioner set against the raw broker ceiling and the
// asynq peer, on the same rows as the ratios (the medians
// with several runs).
type PeerTargets struct {
	Targets []Target `json:"targets"`
	// MsPerCallByClass is the CPU of every process class per createCustomer
	// at -c in flight (phase 2), the median over the runs; "machine" is the
	// whole machine's busy time, unseen processes included.
	MsPerCallByClass map[string]float64 `json:"msPerCallByClass"`
}

// Target is a Ratio with the figures it is made of.
type Target struct {
	Ratio
	Figures string `json:"figures,omitempty"`
}

// Targets against the peer and the ceiling.
const (
	peerPeerRatio    = 2.0  // createCustomer at -c in flight, times the peer's
	peerCeilingShare = 0.40 // of the raw ceiling
	peerOwnCPUMs     = 0.20 // gateway + workers per createCustomer
	peerP99Ms        = 25.0 // at 25% and 50% of the peak
	peerSingleRatio  = 1.5  // single caller p50, times the raw single p50
)

// offeredBesideBroker is the figures of a p99 target: the rate offered, and
// the bare broker's p99 at about that rate (phase 2b) when it was measured.
func offeredBesideBroker(r, broker Row) string {
	s := fmt.Sprintf("%.0f/s offered", r.Offered)
	if broker.OK > 0 {
		s += fmt.Sprintf("; the broker alone at %.0f/s: p99 %.1f ms", broker.Offered, broker.P99)
	}
	return s
}

func peerTargets(rows []Row, runs [][]Row) PeerTargets {
	get := func(key string) Row { row, _ := find(rows, key); return row }
	ceiling, ceilingSingle := get(keyCeiling), get(keyCeilingSingle)
	e2e, single, rate25, rate50 := get(keyE2E), get(keySingle), get(keyRate25), get(keyRate50)
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	share, latency := div(e2e.Rate, ceiling.Rate), div(single.P50, ceilingSingle.P50)
	out := PeerTargets{MsPerCallByClass: cpuByClass(runs)}
	_, withPeer := find(rows, keyPeerE2E)
	peerE2E, peerRate50, peerSingle := get(keyPeerE2E), get(keyPeerRate50), get(keyPeerSingle)
	if withPeer {
		x := div(e2e.Rate, peerE2E.Rate)
		out.Targets = append(out.Targets, Target{Ratio{fmt.Sprintf("createCustomer at %s in flight / the peer's", rowC(e2e)), x, "",
			fmt.Sprintf(">= %.1f", peerPeerRatio), x >= peerPeerRatio}, fmt.Sprintf("%.0f/s / %.0f/s", e2e.Rate, peerE2E.Rate)})
	}
	out.Targets = append(out.Targets,
		Target{Ratio{"createCustomer / raw ceiling", share, "", fmt.Sprintf(">= %.2f", peerCeilingShare), share >= peerCeilingShare},
			fmt.Sprintf("%.0f/s / %.0f/s", e2e.Rate, ceiling.Rate)},
		Target{Ratio{"own CPU per createCustomer (gateway+workers)", e2e.CPUPerReq, "ms", fmt.Sprintf("<= %.2f ms", peerOwnCPUMs),
			e2e.OK > 0 && e2e.CPUPerReq <= peerOwnCPUMs}, ""},
		Target{Ratio{"p99 at 25% of the peak", rate25.P99, "ms", fmt.Sprintf("<= %.0f ms", peerP99Ms), rate25.OK > 0 && rate25.P99 <= peerP99Ms},
			offeredBesideBroker(rate25, get(keyCeilingAt25))},
		Target{Ratio{"p99 at 50% of the peak", rate50.P99, "ms", fmt.Sprintf("<= %.0f ms", peerP99Ms), rate50.OK > 0 && rate50.P99 <= peerP99Ms},
			offeredBesideBroker(rate50, get(keyCeilingAt50))},
	)
	if withPeer {
		out.Targets = append(out.Targets, Target{Ratio{"p99 at 50% of the peak / the peer's at 50% of its peak", div(rate50.P99, peerRate50.P99), "", "< 1",
			rate50.OK > 0 && peerRate50.OK > 0 && rate50.P99 < peerRate50.P99},
			fmt.Sprintf("%.2f ms / %.2f ms", rate50.P99, peerRate50.P99)})
	}
	out.Targets = append(out.Targets, Target{Ratio{"single caller p50 / raw single p50", latency, "", fmt.Sprintf("<= %.1f", peerSingleRatio),
		latency > 0 && latency <= peerSingleRatio}, fmt.Sprintf("%.2f ms / %.2f ms", single.P50, ceilingSingle.P50)})
	if withPeer {
		out.Targets = append(out.Targets, Target{Ratio{"single caller p50 / the peer's", div(single.P50, peerSingle.P50), "", "< 1",
			single.OK > 0 && peerSingle.OK > 0 && single.P50 < peerSingle.P50},
			fmt.Sprintf("%.2f ms / %.2f ms", single.P50, peerSingle.P50)})
	}
	return out
}

// rowC is the calls in flight of a closed-loop row, read from its label.
func rowC(r Row) string {
	_, c, _ := strings.Cut(r.Phase, "c=")
	return c
}

// cpuByClass is, class by class, the median over the runs of phase 2's CPU
// per createCustomer, with the machine's busy time per call beside it.
func cpuByClass(runs [][]Row) map[string]float64 {
	per := map[string][]float64{}
	for _, run := range runs {
		e2e, ok := find(run, keyE2E)
		if !ok || e2e.CPU == nil || e2e.OK == 0 {
			continue
		}
		for class, ms := range e2e.CPU.MsPerReq {
			per[class] = append(per[class], ms)
		}
		per["machine"] = append(per["machine"], e2e.CPU.MachineBusyCPUs*e2e.CPU.Seconds*1000/float64(e2e.OK))
	}
	out := map[string]float64{}
	for class, xs := range per {
		out[class] = median(xs)
	}
	return out
}

func printPeerTargets(out io.Writer, t PeerTargets) {
	fmt.Fprintf(out, "\ntargets against the asynq peer\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, r := range t.Targets {
		verdict := "met"
		if !r.Met {
			verdict = "missed"
		}
		fmt.Fprintf(tw, "  %s\t%.3f %s\t%s\ttarget %s\t%s\n", r.Name, r.Value, r.Unit, r.Figures, r.Target, verdict)
	}
	tw.Flush()
	var parts []string
	for _, class := range slices.Sorted(maps.Keys(t.MsPerCallByClass)) {
		if class != "machine" {
			parts = append(parts, fmt.Sprintf("%s %.3f", class, t.MsPerCallByClass[class]))
		}
	}
	fmt.Fprintf(out, "  CPU per createCustomer at the peak, ms by process class: %s; machine %.3f\n",
		strings.Join(parts, ", "), t.MsPerCallByClass["machine"])
}
