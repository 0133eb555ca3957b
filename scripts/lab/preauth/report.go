package preauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// counters are the gateway's metrics of interest, by "name/label value".
type counters map[string]float64

// families read from the gateway, with the label whose values are kept.
var families = map[string]string{
	"oneoffice_auth_key_lookups_total": "result",
	"oneoffice_rate_limited_total":     "scope",
	"oneoffice_auth_failures_total":    "reason",
	"process_cpu_seconds_total":        "",
}

// lookupResults in the order they are printed.
var lookupResults = []string{"hit", "negative_hit", "shared", "miss", "refresh", "refused", "timeout", "error"}

func scrape(ctx context.Context, addr string) (counters, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape the gateway: %w", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse the gateway's metrics: %w", err)
	}
	c := counters{}
	for name, label := range families {
		for _, m := range mfs[name].GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					key += "/" + l.GetValue()
				}
			}
			c[key] += m.GetCounter().GetValue()
		}
	}
	return c, nil
}

func (c counters) minus(before counters) counters {
	d := counters{}
	for k, v := range c {
		d[k] = v - before[k]
	}
	return d
}

type phaseResult struct {
	name      string
	flood     float64 // offered random-key calls a second
	good, bad *tally
	gateway   counters // over the phase
	machine   float64  // busy share of all the machine's processors over the phase, from /proc/stat
	self      float64  // the bench's own processor seconds a second: it shares the machine
}

// selfCPU is the processor time this process has used.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// cpuTimes reads the machine's busy and total processor time (/proc/stat):
// the machine is shared, and a busy one explains slow calls.
func cpuTimes() (busy, total float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, f := range fields[1:] {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

type report struct {
	cfg    config
	phases []phaseResult
}

func (r report) print(out io.Writer) {
	c := r.cfg
	// The processes inherit the bench's environment: an exported setting
	// applies to them.
	fmt.Fprintf(out, "\npreauth bench: one gateway (GOMAXPROCS %s), one worker; CLIENT_RATE_LIMIT_RPS %s; "+
		"AUTH_LOOKUP_CONCURRENCY %s; AUTH_LOOKUP_TIMEOUT %s\n",
		orDefault(c.gomaxprocs, envOr("GOMAXPROCS", "1 (default)")), orOff(c.clientRPS),
		envOr("AUTH_LOOKUP_CONCURRENCY", "4 (default)"), envOr("AUTH_LOOKUP_TIMEOUT", "1s (default)"))
	fmt.Fprintf(out, "\nthe valid partner's getCustomer at %g/s, %s per phase\n", c.probeRate, c.duration)
	fmt.Fprintf(out, "  %-6s %7s %9s %9s %9s  %s\n", "phase", "calls", "p50", "p99", "max", "statuses")
	for _, p := range r.phases {
		fmt.Fprintf(out, "  %-6s %7d %9s %9s %9s  %s\n", p.name, p.good.sent(), ms(p.good.quantile(.5)),
			ms(p.good.quantile(.99)), ms(p.good.quantile(1)), statuses(p.good))
	}
	for _, p := range r.phases {
		if p.flood == 0 {
			continue
		}
		secs := p.bad.elapsed.Seconds()
		fmt.Fprintf(out, "\nrandom-key calls during %s: offered %g/s over %d connections; sent %d (%.0f/s), shed %d\n",
			p.name, p.flood, c.conns, p.bad.sent(), float64(p.bad.sent())/secs, p.bad.shed)
		fmt.Fprintf(out, "  statuses %s; latency p50 %s, p99 %s, max %s\n", statuses(p.bad),
			ms(p.bad.quantile(.5)), ms(p.bad.quantile(.99)), ms(p.bad.quantile(1)))
	}
	fmt.Fprintf(out, "\nthe gateway during each phase\n")
	for _, p := range r.phases {
		g := p.gateway
		var lookups []string
		for _, res := range lookupResults {
			lookups = append(lookups, fmt.Sprintf("%s %.0f", res, g["oneoffice_auth_key_lookups_total/"+res]))
		}
		fmt.Fprintf(out, "  %-6s CPU %.2f s/s (load generator %.2f s/s, machine %.0f%% busy); 401 %.0f, 429 client %.0f; key lookups: %s\n",
			p.name, g["process_cpu_seconds_total"]/c.duration.Seconds(), p.self, 100*p.machine, g["oneoffice_auth_failures_total/invalid"],
			g["oneoffice_rate_limited_total/client"], strings.Join(lookups, ", "))
	}
}

// statuses lists a tally's statuses, most frequent first; 0 is "no answer".
func statuses(t *tally) string {
	var codes []int
	for code := range t.statuses {
		codes = append(codes, code)
	}
	slices.SortFunc(codes, func(a, b int) int { return t.statuses[b] - t.statuses[a] })
	var parts []string
	for _, code := range codes {
		name := fmt.Sprint(code)
		if code == 0 {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", name, t.statuses[code]))
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func orDefault(n int, def string) string {
	if n == 0 {
		return def
	}
	return fmt.Sprint(n)
}

func orOff(rps float64) string {
	if rps == 0 {
		return "0 (off)"
	}
	return fmt.Sprint(rps)
}
