// Package ratelimit is `lab ratelimit`: it measures the per-partner rate
// limit shared by gateways. It brings up an isolated stack (shared/testenv)
// of two gateways with RATE_LIMIT_RPS set, offers one partner's calls to both at a
// fixed total rate for a while, and reports how many each let through. With a
// limit per gateway process the partner would get twice the limit; shared
// through Redis it gets the limit (plus the one burst) in all.
//
//	go run ./scripts/lab ratelimit [-limit 50] [-offered 200] [-duration 20s]
package ratelimit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oneoffice/provisioner/scripts/lab/load"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/testenv"
)

type config struct {
	limit, offered float64
	duration       time.Duration
}

// Run runs the measure with the command line args.
func Run(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("ratelimit", flag.ContinueOnError)
	fs.Float64Var(&cfg.limit, "limit", 50, "RATE_LIMIT_RPS of the gateways: calls per second per partner")
	fs.Float64Var(&cfg.offered, "offered", 200, "calls per second offered, split evenly between the two gateways")
	fs.DurationVar(&cfg.duration, "duration", 20*time.Second, "how long the calls are offered")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return measure(ctx, cfg)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ratelimit: "+format+"\n", args...)
}

func measure(ctx context.Context, cfg config) (err error) {
	srv, err := testenv.FromEnv()
	if err != nil {
		return err
	}
	srv.Logf = progress
	st, err := srv.UpStack(ctx, testenv.StackConfig{Name: "ratelimit", Workers: 1, Gateways: 2,
		Env: []string{"RATE_LIMIT_RPS=" + strconv.FormatFloat(cfg.limit, 'f', -1, 64), "LOG_LEVEL=warn"}})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close(0)) }()
	progress("offering %.0f calls/s for %s to %v, limit %.0f/s per partner", cfg.offered, cfg.duration, st.APIs, cfg.limit)
	report(os.Stdout, cfg, st.APIs, offer(ctx, cfg, st.APIs, st.Key))
	return nil
}

// counts are the answers of one gateway by status.
type counts map[int]int

// offer sends getCustomer calls of one partner at cfg.offered per second,
// alternating between the gateways (open loop: a slow answer delays no call).
func offer(ctx context.Context, cfg config, gateways []string, key string) []counts {
	body := fmt.Sprintf(`{"method":%q,"params":{"id":"nobody"}}`, protocol.GetCustomer)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	out := make([]counts, len(gateways))
	for i := range out {
		out[i] = counts{}
	}
	var mu sync.Mutex
	var n atomic.Int64
	load.Open(ctx, func(context.Context) string {
		g := int(n.Add(1)) % len(gateways)
		status := call(client, "http://"+gateways[g]+"/", key, body)
		mu.Lock()
		out[g][status]++
		mu.Unlock()
		return ""
	}, cfg.offered, cfg.duration, 1<<16)
	return out
}

// call returns the answer's status, 0 when there was none.
func call(client *http.Client, url, key, body string) int {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("x-api-key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func report(w io.Writer, cfg config, gateways []string, all []counts) {
	seconds := cfg.duration.Seconds()
	var passed, limited, other int
	fmt.Fprintf(w, "per-partner rate limit %.0f/s, %.0f calls/s offered for %s to %d gateways\n",
		cfg.limit, cfg.offered, cfg.duration, len(gateways))
	fmt.Fprintf(w, "%10s %10s %10s %10s %12s\n", "gateway", "let through", "429", "other", "through/s")
	for i, c := range all {
		// 404 is the answer of a call let through (the customer does not exist).
		p, l := c[http.StatusNotFound], c[http.StatusTooManyRequests]
		o := 0
		for status, n := range c {
			if status != http.StatusNotFound && status != http.StatusTooManyRequests {
				o += n
			}
		}
		passed, limited, other = passed+p, limited+l, other+o
		fmt.Fprintf(w, "%10d %10d %10d %10d %12.1f\n", i+1, p, l, o, float64(p)/seconds)
	}
	fmt.Fprintf(w, "%10s %10d %10d %10d %12.1f\n", "all", passed, limited, other, float64(passed)/seconds)
	fmt.Fprintf(w, "expected with one shared budget: about %.0f let through (limit x duration + one burst of %.0f); per-gateway budgets would let about %.0f through\n",
		cfg.limit*seconds+cfg.limit, cfg.limit, float64(len(gateways))*(cfg.limit*seconds+cfg.limit))
}
