package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// Report is everything one bench invocation measured.
type Report struct {
	Started     time.Time   `json:"started"`
	Machine     Machine     `json:"machine"`
	Settings    Settings    `json:"settings"`
	Idle        Idle        `json:"idleOwnCpu"`
	Runs        [][]Row     `json:"runs"`
	MkdirMicros []float64   `json:"mkdirCpuMicrosPerRun"` // tenant directory cost before each run
	Median      []Row       `json:"median,omitempty"`     // with -runs > 1
	Idempotency *IdemResult `json:"idempotency"`
	Ratios      []Ratio     `json:"ratios"`
	PeerTargets PeerTargets `json:"peerTargets"`
}

// Machine describes where the figures were taken.
type Machine struct {
	Cores       int    `json:"cores"`
	CPUModel    string `json:"cpuModel"`
	Go          string `json:"go"`
	LoadAvgFrom string `json:"loadAvgAtStart"`
	LoadAvgTo   string `json:"loadAvgAtEnd"`
}

// Settings are the knobs of the run.
type Settings struct {
	Workers     int     `json:"workers"`
	Concurrency int     `json:"workerConcurrency"`
	Prefetch    int     `json:"workerPrefetch"`
	C           int     `json:"inFlight"`
	GOMAXPROCS  string  `json:"gomaxprocs"`    // of the gateway and workers
	GoDebug     string  `json:"godebug"`       // GODEBUG of the bench, the gateway and the workers
	Storage     string  `json:"storageParent"` // where tenant directories went; "" is the work directory
	Duration    float64 `json:"durationSec"`
	Runs        int     `json:"runs"`
	Command     string  `json:"command"`
}

// Ratio is one figure set against its target.
type Ratio struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit,omitempty"`
	Target string  `json:"target"`
	Met    bool    `json:"met"`
}

func newReport(cfg config) *Report {
	return &Report{
		Started: time.Now(),
		Machine: Machine{Cores: runtime.NumCPU(), CPUModel: cpuModel(), Go: runtime.Version(), LoadAvgFrom: loadAvg()},
		Settings: Settings{Workers: cfg.workers, Concurrency: cfg.concurrency, Prefetch: cfg.prefetch,
			C: cfg.c, GOMAXPROCS: cfg.stack.Procs(), GoDebug: os.Getenv("GODEBUG"), Storage: cfg.storage, Duration: cfg.duration.Seconds(), Runs: cfg.runs,
			Command: strings.Join(append([]string{"go run ./scripts/lab bench"}, os.Args[1:]...), " ")},
	}
}

// final is the rows the ratios are taken from: the median with several runs.
func (r *Report) final() []Row {
	if len(r.Median) > 0 {
		return r.Median
	}
	if len(r.Runs) == 0 {
		return nil
	}
	return r.Runs[len(r.Runs)-1]
}

// finish computes the medians and the ratios.
func (r *Report) finish() {
	r.Machine.LoadAvgTo = loadAvg()
	if len(r.Runs) > 1 {
		r.Median = medianRows(r.Runs)
	}
	r.Ratios = ratios(r.final(), r.Runs)
	r.PeerTargets = peerTargets(r.final(), r.Runs)
}

// ratios sets the figures against the project's targets. The errors at 75%
// are those of all runs: a median would hide a bad run.
func ratios(rows []Row, runs [][]Row) []Ratio {
	get := func(key string) Row { row, _ := find(rows, key); return row }
	ceiling, ceilingSingle := get(keyCeiling), get(keyCeilingSingle)
	e2e, single, rate50 := get(keyE2E), get(keySingle), get(keyRate50)
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	errors75, ok75 := 0, 0
	for _, run := range runs {
		row, _ := find(run, keyRate75)
		errors75 += row.Errors
		ok75 += row.OK
	}
	through := div(e2e.Rate, ceiling.Rate)
	latency := div(single.P50, ceilingSingle.P50)
	out := []Ratio{
		{"end-to-end throughput / broker ceiling", through, "", ">= 0.25", through >= 0.25},
		{"single-caller e2e p50 / raw single p50", latency, "", "<= 2", latency > 0 && latency <= 2},
		{"p99 at 50% of max", rate50.P99, "ms", "<= 25 ms", rate50.OK > 0 && rate50.P99 <= 25},
		{"errors at 75% of max, all runs", float64(errors75), "", "0", ok75 > 0 && errors75 == 0},
		{"own CPU per createCustomer (gateway+workers)", e2e.CPUPerReq, "ms", "<= 0.35 ms", e2e.OK > 0 && e2e.CPUPerReq <= 0.35},
	}
	if _, ok := find(rows, keyMix64); !ok {
		return out
	}
	mix64, mix256, mix80 := get(keyMix64), get(keyMix256), get(keyMixRate80)
	peak := div(mix64.Rate, e2e.Rate)
	hold := div(mix256.Rate, mix64.Rate)
	tail := div(mix256.P99, mix64.P99)
	return append(out,
		Ratio{"mix at 64 in flight / createCustomer (phase 2, -c in flight)", peak, "", ">= 0.8", peak >= 0.8},
		Ratio{"mix at 256 / mix at 64 in flight", hold, "", ">= 0.95", hold >= 0.95},
		Ratio{"mix p99 at 256 / p99 at 64 in flight", tail, "", "<= 2", mix256.OK > 0 && tail <= 2},
		Ratio{"mix p99 at 80% of its peak", mix80.P99, "ms", "< 50 ms", mix80.OK > 0 && mix80.P99 < 50},
		Ratio{"mix failed calls at 80% of its peak", float64(mix80.Errors), "", "0", mix80.OK > 0 && mix80.Errors == 0},
	)
}

func (r *Report) print(out io.Writer) {
	s := r.Settings
	procs := "GOMAXPROCS=" + s.GOMAXPROCS
	fmt.Fprintf(out, "\nOneOffice provisioner bench: %d workers x concurrency %d x prefetch %d, %s, GODEBUG=%s, %d in flight, %s\n",
		s.Workers, s.Concurrency, s.Prefetch, procs, s.GoDebug, s.C, r.Started.Format(time.RFC3339))
	if s.Storage != "" {
		fmt.Fprintf(out, "tenant storage under %s\n", s.Storage)
	}
	fmt.Fprintf(out, "machine: %d cores, %s, %s; load average %s at start, %s at end\n",
		r.Machine.Cores, r.Machine.CPUModel, r.Machine.Go, r.Machine.LoadAvgFrom, r.Machine.LoadAvgTo)
	fmt.Fprintf(out, "idle CPU (no load, %.0f s, resolution %.1f ms/s): gateway %.1f ms/s, workers %.1f ms/s\n",
		r.Idle.Seconds, float64(testenv.ClockTick/time.Millisecond)/r.Idle.Seconds, r.Idle.GatewayMsPerSec, r.Idle.WorkersMsPerSec)
	for i, rows := range r.Runs {
		fmt.Fprintf(out, "\nrun %d\n", i+1)
		if i < len(r.MkdirMicros) {
			fmt.Fprintf(out, "file system before the run: one tenant directory (mkdir) costs %.0f us of CPU\n", r.MkdirMicros[i])
		}
		printRows(out, rows, true)
		for _, k := range []string{keyCeiling, keyCeilingService, keyCeilingAtRate, keyCeilingServiceAtRate, keyCeilingAt25, keyCeilingAt50} {
			if ceiling, ok := find(rows, k); ok && ceiling.CPU != nil {
				printCeilingCPU(out, ceiling)
			}
		}
		if e2e, ok := find(rows, keyE2E); ok && e2e.CPU != nil {
			printCPU(out, e2e)
		}
		if peer, ok := find(rows, keyPeerE2E); ok && peer.CPU != nil {
			printPeerCPU(out, peer)
		}
	}
	if len(r.Median) > 0 {
		fmt.Fprintf(out, "\nmedian of %d runs\n", len(r.Runs))
		printRows(out, r.Median, false)
	}
	if r.Idempotency != nil {
		printIdem(out, r.Idempotency)
	}
	printRatios(out, r.Ratios)
	printPeerTargets(out, r.PeerTargets)
}

func printRows(out io.Writer, rows []Row, detail bool) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\toffered/s\tok/s\tp50 ms\tp95 ms\tp99 ms\terrors\town CPU ms/req\t")
	for _, row := range rows {
		offered, cpu := "-", "-"
		if row.Offered > 0 {
			offered = fmt.Sprintf("%.0f", row.Offered)
		}
		if row.CPUPerReq > 0 {
			cpu = fmt.Sprintf("%.3f", row.CPUPerReq)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.2f\t%.2f\t%.2f\t%s\t%s\t\n", row.Phase, offered, row.Rate,
			row.P50, row.P95, row.P99, errorText(row, detail), cpu)
	}
	tw.Flush()
}

// errorText is the error count, by label when detail is asked.
func errorText(row Row, detail bool) string {
	if row.Errors == 0 || !detail || len(row.ErrorsBy) == 0 {
		return fmt.Sprint(row.Errors)
	}
	var parts []string
	for label, n := range row.ErrorsBy {
		parts = append(parts, fmt.Sprintf("%s:%d", label, n))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d (%s)", row.Errors, strings.Join(parts, " "))
}

func printCPU(out io.Writer, row Row) {
	c := row.CPU
	fmt.Fprintf(out, "CPU during %q (%.1f s, %d createCustomer), ms per request:\n", row.Phase, c.Seconds, row.OK)
	fmt.Fprintf(out, "  own: gateway %.3f + workers %.3f = %.3f\n", c.GatewayMsPerReq, c.WorkersMsPerReq, c.OwnMsPerReq)
	fmt.Fprintf(out, "  servers (shared with all their users): rabbitmq %.3f, postgres %.3f, redis %.3f; load generator %.3f\n",
		c.MsPerReq[classRabbitMQ], c.MsPerReq[classPostgres], c.MsPerReq[classRedis], c.MsPerReq[classBench])
	fmt.Fprintf(out, "  machine: %.0f%% of %d cores busy (%.2f cores); other processes %.2f cores",
		c.MachineBusyPct, c.Cores, c.MachineBusyCPUs, c.MsPerReq[classOther]*float64(row.OK)/1000/c.Seconds)
	var top []string
	for _, p := range c.TopOthers {
		top = append(top, fmt.Sprintf("%s %.2f", p.Comm, p.Cores))
	}
	if len(top) > 0 {
		fmt.Fprintf(out, " (%s)", strings.Join(top, ", "))
	}
	fmt.Fprintf(out, "; short-lived/unseen %.2f cores\n", c.UnseenCPUs)
	if row.PerMessage > 0 {
		fmt.Fprintf(out, "  broker: %.2f commands per message the gateway published\n", row.PerMessage)
	}
}

// printPeerCPU is printCPU for the peer, whose own CPU is its processes'.
func printPeerCPU(out io.Writer, row Row) {
	c := row.CPU
	fmt.Fprintf(out, "CPU during %q (%.1f s, %d createCustomer), ms per request: peer %.3f; rabbitmq %.3f, postgres %.3f, redis %.3f; load generator %.3f; machine %.0f%% of %d cores busy\n",
		row.Phase, c.Seconds, row.OK, c.MsPerReq[classPeer], c.MsPerReq[classRabbitMQ], c.MsPerReq[classPostgres],
		c.MsPerReq[classRedis], c.MsPerReq[classBench], c.MachineBusyPct, c.Cores)
}

func printCeilingCPU(out io.Writer, row Row) {
	c := row.CPU
	fmt.Fprintf(out, "CPU during %q (%.1f s, %d round trips), ms per round trip: rabbitmq %.3f, bench (client and echo) %.3f; machine %.0f%% of %d cores busy\n",
		row.Phase, c.Seconds, row.OK, c.MsPerReq[classRabbitMQ], c.MsPerReq[classBench], c.MachineBusyPct, c.Cores)
}

func printIdem(out io.Writer, idem *IdemResult) {
	fmt.Fprintf(out, "\nidempotency step (in process, same Redis, shared/idempotency.Store)\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\tok/s\tp50 ms\tp99 ms\terrors\t")
	for _, row := range []Row{idem.Acquire, idem.Complete, idem.SingleAcquire, idem.SingleComplete} {
		fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%.3f\t%s\t\n", row.Phase, row.Rate, row.P50, row.P99, errorText(row, true))
	}
	tw.Flush()
}

func printRatios(out io.Writer, rs []Ratio) {
	fmt.Fprintf(out, "\ntargets\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, r := range rs {
		verdict := "met"
		if !r.Met {
			verdict = "MISSED"
		}
		fmt.Fprintf(tw, "  %s\t%.3f %s\ttarget %s\t%s\n", r.Name, r.Value, r.Unit, r.Target, verdict)
	}
	tw.Flush()
}

func (r *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
