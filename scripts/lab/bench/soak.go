package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Soak is `lab soak` (make soak): the partner mix in an open loop at a share
// of its peak for a long run, reported minute by minute: throughput, p50 and
// p99, failed calls, and the resident memory and goroutines of the gateway
// and of each worker. Without -rate it first measures the peak: the mix at
// 64 in flight for -peak-duration.
//
//	go run ./scripts/lab soak [-duration 10m] [-interval 1m] [-share 0.8] [-rate 0]
//	                          [-workers 2] [-admission 128] [-json FILE]
func Soak(ctx context.Context, args []string) error {
	cfg, err := parseSoakFlags(args)
	if err != nil {
		return err
	}
	return soak(ctx, cfg, os.Stdout)
}

type soakConfig struct {
	bench        config // the stack's settings
	rate         float64
	peakDuration time.Duration
	share        float64
	duration     time.Duration
	interval     time.Duration
	jsonPath     string
}

func parseSoakFlags(args []string) (soakConfig, error) {
	var c soakConfig
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	if err := c.bench.stack.Register(fs); err != nil {
		return c, err
	}
	fs.IntVar(&c.bench.workers, "workers", 2, "worker processes")
	fs.IntVar(&c.bench.concurrency, "concurrency", 32, "WORKER_CONCURRENCY of each worker")
	fs.IntVar(&c.bench.prefetch, "prefetch", 64, "WORKER_PREFETCH of each worker")
	fs.IntVar(&c.bench.admission, "admission", defaultAdmission, "ADMISSION_MAX_IN_FLIGHT of the gateway (0: off)")
	fs.IntVar(&c.bench.maxInFlight, "max-inflight", 512, "most calls in flight in the open loop (more are shed and counted as failed)")
	fs.StringVar(&c.bench.storage, "storage", "", "directory under which the tenants' storage root is made (default: the work directory)")
	fs.Float64Var(&c.rate, "rate", 0, "calls per second (0: -share of the mix's peak, measured first)")
	fs.DurationVar(&c.peakDuration, "peak-duration", 20*time.Second, "how long the peak is measured (mix at 64 in flight)")
	fs.Float64Var(&c.share, "share", mixShare, "the open loop's rate as a share of the measured peak")
	fs.DurationVar(&c.duration, "duration", 10*time.Minute, "length of the soak")
	fs.DurationVar(&c.interval, "interval", time.Minute, "length of each reported interval")
	fs.StringVar(&c.jsonPath, "json", "", "also write the results to this JSON file")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.bench.c = 64
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if c.rate < 0 || c.share <= 0 || c.share > 2 {
		errs = append(errs, errors.New("-rate must be 0 or more, -share in (0, 2]"))
	}
	if c.interval <= 0 || c.duration < c.interval || c.duration > 24*time.Hour {
		errs = append(errs, errors.New("-interval must be positive and at most -duration, -duration at most 24h"))
	}
	if c.bench.workers < 1 || c.bench.concurrency < 1 || c.bench.prefetch < 1 || c.bench.maxInFlight < 1 || c.bench.admission < 0 {
		errs = append(errs, errors.New("-workers, -concurrency, -prefetch, -max-inflight must be at least 1, -admission 0 or more"))
	}
	return c, errors.Join(append(errs, c.bench.stack.Validate())...)
}

// SoakMinute is one interval of the soak.
type SoakMinute struct {
	Row
	Procs []ProcSample `json:"procs"`
}

// ProcSample is one process's resident memory and goroutines at the end of
// an interval.
type ProcSample struct {
	Name       string  `json:"name"`
	RSSMiB     float64 `json:"rssMiB"`
	Goroutines int     `json:"goroutines"`
}

// SoakReport is what a soak measured.
type SoakReport struct {
	Started   time.Time    `json:"started"`
	Machine   Machine      `json:"machine"`
	Command   string       `json:"command"`
	Peak      *Row         `json:"peak,omitempty"`
	Rate      float64      `json:"offeredPerSec"`
	Start     []ProcSample `json:"procsAtStart"`
	Intervals []SoakMinute `json:"intervals"`
	Ratios    []Ratio      `json:"ratios"`
}

func soak(ctx context.Context, cfg soakConfig, out io.Writer) error {
	st, err := upStack(ctx, cfg.bench)
	if err != nil {
		return err
	}
	defer func() {
		progress("tearing down the stack")
		if cerr := st.Close(teardownLimit); cerr != nil {
			fmt.Fprintln(os.Stderr, "soak: teardown:", cerr)
		}
	}()
	api := newAPIClient(st.URL(), st.Key, cfg.bench)
	defer api.close()
	rep := &SoakReport{Started: time.Now(), Rate: cfg.rate,
		Machine: Machine{Cores: runtime.NumCPU(), CPUModel: cpuModel(), LoadAvgFrom: loadAvg()},
		Command: strings.Join(append([]string{"go run ./scripts/lab soak"}, os.Args[2:]...), " ")}
	if rep.Rate == 0 {
		progress("the mix's peak: 64 in flight for %s", cfg.peakDuration)
		peak := closedLoop(ctx, keyMix64, "mix c=64", newMix(api, true).call, 64, cfg.peakDuration)
		if peak.Rate == 0 {
			return fmt.Errorf("no call of the partner mix succeeded (errors %v)", peak.ErrorsBy)
		}
		rep.Peak, rep.Rate = &peak, peak.Rate*cfg.share
	}
	if rep.Start, err = sampleProcs(ctx, st); err != nil {
		return err
	}
	m := newMix(api, false)
	for i := 0; time.Duration(i)*cfg.interval < cfg.duration && ctx.Err() == nil; i++ {
		r := openLoop(ctx, "", fmt.Sprintf("minute %d", i+1), m.call, rep.Rate, cfg.interval, cfg.bench.maxInFlight)
		procs, err := sampleProcs(ctx, st)
		if err != nil {
			return err
		}
		rep.Intervals = append(rep.Intervals, SoakMinute{Row: r, Procs: procs})
		progress("%s: %.0f/s ok, p50 %.2f ms, p99 %.2f ms, failed %d; %s", r.Phase, r.Rate, r.P50, r.P99, r.Errors,
			procText(procs))
	}
	rep.Machine.LoadAvgTo = loadAvg()
	rep.Ratios = soakRatios(rep)
	rep.print(out)
	if cfg.jsonPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(cfg.jsonPath, append(b, '\n'), 0o644)
	}
	return ctx.Err()
}

// sampleProcs reads process_resident_memory_bytes and go_goroutines from the
// admin port of the gateway and of each worker.
func sampleProcs(ctx context.Context, st *stack) ([]ProcSample, error) {
	var out []ProcSample
	for _, p := range append(append(st.Gateways[:0:0], st.Gateways...), st.Workers...) {
		v, err := scrapeValues(ctx, p.Metrics, "process_resident_memory_bytes", "go_goroutines")
		if err != nil {
			return nil, fmt.Errorf("%s metrics: %w", p.Name, err)
		}
		out = append(out, ProcSample{Name: p.Name, RSSMiB: v[0] / (1 << 20), Goroutines: int(v[1])})
	}
	return out, nil
}

// scrapeValues returns the values of unlabelled metrics names at addr's
// /metrics.
func scrapeValues(ctx context.Context, addr string, names ...string) ([]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	got := make([]float64, len(names))
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		for i, n := range names {
			if name == n {
				if got[i], err = strconv.ParseFloat(strings.TrimSpace(value), 64); err != nil {
					return nil, fmt.Errorf("%s: %w", n, err)
				}
				found++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if found != len(names) {
		return nil, fmt.Errorf("found %d of %v", found, names)
	}
	return got, nil
}

func procText(ps []ProcSample) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s %.1f MiB %d goroutines", p.Name, p.RSSMiB, p.Goroutines))
	}
	return strings.Join(parts, ", ")
}

// soakRatios sets the soak against the targets: p99 under 50 ms every
// interval, throughput within 10% of its mean every interval, no failed
// call, and memory and goroutines flat: the last interval's within 20% (RSS)
// and 10% plus 10 (goroutines) of the first's.
func soakRatios(r *SoakReport) []Ratio {
	if len(r.Intervals) == 0 {
		return nil
	}
	worstP99, failed, sum := 0.0, 0, 0.0
	for _, m := range r.Intervals {
		worstP99 = math.Max(worstP99, m.P99)
		failed += m.Errors
		sum += m.Rate
	}
	mean := sum / float64(len(r.Intervals))
	spread := 0.0
	for _, m := range r.Intervals {
		if mean > 0 {
			spread = math.Max(spread, math.Abs(m.Rate-mean)/mean)
		}
	}
	first, last := r.Intervals[0].Procs, r.Intervals[len(r.Intervals)-1].Procs
	rssGrowth, goGrowth := 0.0, 0.0
	for i := range first {
		if i < len(last) && first[i].RSSMiB > 0 {
			rssGrowth = math.Max(rssGrowth, last[i].RSSMiB/first[i].RSSMiB-1)
			goGrowth = math.Max(goGrowth, float64(last[i].Goroutines-first[i].Goroutines)/float64(first[i].Goroutines+10))
		}
	}
	return []Ratio{
		{"worst interval p99", worstP99, "ms", "< 50 ms", worstP99 < 50},
		{"throughput: largest interval deviation from the mean", spread, "", "<= 0.10", spread <= 0.10},
		{"failed calls (all intervals)", float64(failed), "", "0", failed == 0},
		{"RSS growth, first to last interval (worst process)", rssGrowth, "", "<= 0.20", rssGrowth <= 0.20},
		{"goroutine growth, first to last interval (worst process)", goGrowth, "", "<= 0.10", goGrowth <= 0.10},
	}
}

func (r *SoakReport) print(out io.Writer) {
	fmt.Fprintf(out, "\nOneOffice provisioner soak: the partner mix at %.0f calls/s, %s\n", r.Rate, r.Started.Format(time.RFC3339))
	fmt.Fprintf(out, "machine: %d cores, %s; load average %s at start, %s at end\n", r.Machine.Cores, r.Machine.CPUModel,
		r.Machine.LoadAvgFrom, r.Machine.LoadAvgTo)
	if r.Peak != nil {
		fmt.Fprintf(out, "peak (mix at 64 in flight, %.0f s): %.0f/s, p99 %.2f ms, errors %s\n", r.Peak.Seconds, r.Peak.Rate,
			r.Peak.P99, errorText(*r.Peak, true))
	}
	fmt.Fprintf(out, "at start: %s\n", procText(r.Start))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "interval\tok/s\tp50 ms\tp99 ms\tfailed\t"
	for _, p := range r.Start {
		header += p.Name + " MiB\t" + p.Name + " goroutines\t"
	}
	fmt.Fprintln(tw, header)
	for _, m := range r.Intervals {
		line := fmt.Sprintf("%s\t%.0f\t%.2f\t%.2f\t%s\t", m.Phase, m.Rate, m.P50, m.P99, errorText(m.Row, true))
		for _, p := range m.Procs {
			line += fmt.Sprintf("%.1f\t%d\t", p.RSSMiB, p.Goroutines)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	printRatios(out, r.Ratios)
}
