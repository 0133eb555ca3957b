package preauth

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/oneoffice/provisioner/scripts/lab/load"
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
	good, bad *load.Recorder
	gateway   counters // over the phase
	machine   float64  // busy share of all the machine's processors over the phase, from /proc/stat
	self      float64  // the bench's own processor seconds a second: it shares the machine
}

type report struct {
	cfg    config
	phases []phaseResult
}

func (r report) print(out io.Writer) {
	c := r.cfg
	rps := fmt.Sprint(c.clientRPS)
	if c.clientRPS == 0 {
		rps = "0 (off)"
	}
	// The processes inherit the bench's environment: an exported setting
	// applies to them.
	fmt.Fprintf(out, "\npreauth bench: one gateway (GOMAXPROCS %s), one worker; CLIENT_RATE_LIMIT_RPS %s; "+
		"AUTH_LOOKUP_CONCURRENCY %s; AUTH_LOOKUP_TIMEOUT %s\n",
		c.stack.Procs(), rps,
		cmp.Or(os.Getenv("AUTH_LOOKUP_CONCURRENCY"), "4 (default)"), cmp.Or(os.Getenv("AUTH_LOOKUP_TIMEOUT"), "750ms (default)"))
	fmt.Fprintf(out, "\nthe valid partner's getCustomer at %g/s, %s per phase\n", c.probeRate, c.duration)
	fmt.Fprintf(out, "  %-6s %7s %9s %9s %9s  %s\n", "phase", "calls", "p50", "p99", "max", "statuses")
	for _, p := range r.phases {
		lat := p.good.Latencies(true)
		fmt.Fprintf(out, "  %-6s %7d %9s %9s %9s  %s\n", p.name, len(lat), ms(load.Percentile(lat, 50)),
			ms(load.Percentile(lat, 99)), ms(load.Percentile(lat, 100)), statuses(p.good))
	}
	for _, p := range r.phases {
		if p.flood == 0 {
			continue
		}
		lat := p.bad.Latencies(true)
		fmt.Fprintf(out, "\nrandom-key calls during %s: offered %g/s over %d connections; sent %d (%.0f/s), shed %d\n",
			p.name, p.flood, c.conns, len(lat), float64(len(lat))/p.bad.Elapsed.Seconds(), p.bad.Labels()[load.Shed])
		fmt.Fprintf(out, "  statuses %s; latency p50 %s, p99 %s, max %s\n", statuses(p.bad),
			ms(load.Percentile(lat, 50)), ms(load.Percentile(lat, 99)), ms(load.Percentile(lat, 100)))
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

// statuses lists the statuses of rec's calls, most frequent first.
func statuses(rec *load.Recorder) string {
	counts := rec.Labels()
	delete(counts, load.Shed)
	codes := slices.Collect(maps.Keys(counts))
	slices.SortFunc(codes, func(a, b string) int { return counts[b] - counts[a] })
	var parts []string
	for _, code := range codes {
		parts = append(parts, fmt.Sprintf("%s: %d", code, counts[code]))
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
