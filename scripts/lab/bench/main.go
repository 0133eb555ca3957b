// Package bench is `lab bench`: it measures the OneOffice provisioner on this machine in one run.
//
// It brings up its own isolated stack on the shared loopback servers (a fresh
// PostgreSQL database, a RabbitMQ vhost, a Redis DB, one gateway and -workers
// workers built from this tree), then measures:
//
//  1. the raw broker ceiling: amqp091 request/reply through a quorum queue with
//     persistent messages, publisher confirms and Direct Reply-to, echoed by an
//     in-process consumer (no HTTP, Redis or database);
//  2. createCustomer end to end through the gateway and the workers at a fixed
//     concurrency (closed loop), then the broker alone again (ceiling.go,
//     shapePhase): with the service's messages, queue arguments and a
//     consumer per worker at the same concurrency, and with either kind of
//     message at the rate createCustomer reached, which splits the broker's
//     CPU per call into the price of the message's shape and of the rate;
//  3. createCustomer latency at fixed arrival rates, 25/50/75% of the maximum
//     measured in 2 (open loop);
//  4. a single caller's createCustomer latency;
//  5. the CPU the gateway and workers spend per request (from /proc), with the
//     machine's and the servers' CPU over the same window;
//  6. the cost of the idempotency step (Store.Acquire and Store.Complete on the
//     same Redis);
//  7. the partner mix (mix.go: a customer, its first order, a suspend and a
//     read of it) at 16, 64 and 256 in flight, callers waiting Retry-After
//     when refused 503 overloaded, then at 80% of its peak (open loop);
//  8. the asynq peer (peer.go, a module beside the repository, -peer-dir),
//     on a database and a Redis DB of its own, a front and -workers workers
//     started after the stack's phases of each run and stopped before the
//     next: createCustomer at -c in flight, at 50% of that peak, and one
//     caller, its own CPU being its processes' (-peer=false skips it).
//
// It prints a table, the ratios to the project's targets and the targets of
// the targets (the provisioner against the raw ceiling and the peer), optionally
// writes JSON, and tears the stack and the peer down on any exit, Ctrl-C
// included.
//
//	go run ./scripts/lab bench [-workers 2] [-concurrency 32] [-prefetch 64] [-c 64]
//	                           [-duration 10s] [-mix-duration 10s] [-admission 128] [-runs 1]
//	                           [-peer=true] [-peer-dir ../shared/tools/asynqpeer] [-json FILE]
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// Run runs the bench with the command line args. `make bench` launches it
// with the GODEBUG setting of scripts/lib/godebug.sh, which the gateway and
// workers it starts inherit, so the load generator, the raw ceiling and the
// service all run as deployed.
func Run(ctx context.Context, args []string) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	return bench(ctx, cfg, os.Stdout)
}

// bench runs the whole benchmark on a fresh stack and reports to out.
func bench(ctx context.Context, cfg config, out io.Writer) (err error) {
	st, err := upStack(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		progress("tearing down the stack")
		if cerr := st.Close(teardownLimit); cerr != nil {
			fmt.Fprintln(os.Stderr, "bench: teardown:", cerr)
		}
	}()
	rep := newReport(cfg)
	progress("idle CPU of the gateway and workers for 3s")
	if rep.Idle, err = st.idleCPU(ctx, 3*time.Second); err != nil {
		return err
	}
	var pr *peer
	if cfg.peer {
		if pr, err = upPeer(ctx, cfg, st.Dir); err != nil {
			return err
		}
		defer func() {
			if cerr := pr.close(); cerr != nil {
				fmt.Fprintln(os.Stderr, "bench: peer teardown:", cerr)
			}
		}()
	}
	api := newAPIClient(st.URL(), st.Key, cfg)
	defer api.close()
	if err := warmUp(ctx, api, cfg); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for i := 1; i <= cfg.runs; i++ {
		progress("run %d of %d", i, cfg.runs)
		cost, err := mkdirCost(st.StorageRoot)
		if err != nil {
			return fmt.Errorf("mkdir calibration: %w", err)
		}
		rep.MkdirMicros = append(rep.MkdirMicros, float64(cost)/float64(time.Microsecond))
		rows, err := runOnce(ctx, st, api, cfg)
		if err == nil && pr != nil {
			var peerRows []Row
			peerRows, err = pr.phases(ctx, st, cfg)
			rows = append(rows, peerRows...)
		}
		if err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
		rep.Runs = append(rep.Runs, rows)
	}
	progress("phase 6: idempotency step")
	if rep.Idempotency, err = idempotencyPhase(ctx, st.RedisURL, cfg); err != nil {
		return fmt.Errorf("idempotency: %w", err)
	}
	rep.finish()
	rep.print(out)
	if cfg.jsonPath != "" {
		if err := rep.writeJSON(cfg.jsonPath); err != nil {
			return err
		}
		fmt.Fprintf(out, "\nresults written to %s\n", cfg.jsonPath)
	}
	return nil
}

// runOnce runs phases 1 to 5 and 7 once and returns their rows in report order.
func runOnce(ctx context.Context, st *stack, api *apiClient, cfg config) ([]Row, error) {
	progress("phase 1: raw broker ceiling (%d in flight, then 1)", cfg.c)
	ceiling, ceilingSingle, err := ceilingPhase(ctx, st.AMQPURL, cfg, st.measureCPU)
	if err != nil {
		return nil, fmt.Errorf("ceiling: %w", err)
	}
	progress("phase 2: createCustomer end to end, %d in flight for %s", cfg.c, cfg.duration)
	e2e := st.measureCPU(func() Row {
		return closedLoop(ctx, keyE2E, fmt.Sprintf("e2e c=%d", cfg.c), api.createCustomer, cfg.c, cfg.duration)
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if e2e.OK == 0 {
		return nil, fmt.Errorf("no createCustomer succeeded in phase 2 (errors %v)", e2e.ErrorsBy)
	}
	rows := []Row{ceiling, ceilingSingle, e2e}
	progress("phase 2b: the broker alone with the service's messages, and at %.0f/s", e2e.Rate)
	shapes, err := shapePhase(ctx, st.AMQPURL, cfg, e2e.Rate, st.measureCPU)
	if err != nil {
		return nil, fmt.Errorf("message shapes: %w", err)
	}
	rows = append(rows, shapes...)
	for _, f := range rateFractions {
		progress("phase 3: %.0f%% of %.0f/s for %s", f.share*100, e2e.Rate, cfg.rateDuration)
		r := st.measureCPU(func() Row {
			return openLoop(ctx, f.key, f.label, api.createCustomer, e2e.Rate*f.share, cfg.rateDuration, cfg.maxInFlight)
		})
		rows = append(rows, r)
	}
	progress("phase 4: a single caller for %s", cfg.singleDuration)
	rows = append(rows, st.measureCPU(func() Row {
		return closedLoop(ctx, keySingle, "e2e 1 in flight", api.createCustomer, 1, cfg.singleDuration)
	}))
	if cfg.mixDuration > 0 {
		mixRows, err := mixPhase(ctx, st, api, cfg)
		if err != nil {
			return nil, err
		}
		rows = append(rows, mixRows...)
	}
	return rows, ctx.Err()
}

// mixLoops are the closed loops of the partner mix, by calls in flight.
var mixLoops = []struct {
	key string
	c   int
}{{keyMix16, 16}, {keyMix64, 64}, {keyMix256, 256}}

// mixShare is the open loop's arrival rate as a share of the mix's peak.
const mixShare = 0.8

// mixPhase runs the partner mix in closed loops at 16, 64 and 256 in
// flight, its callers waiting Retry-After when refused, then in an open
// loop at 80% of the highest rate they reached.
func mixPhase(ctx context.Context, st *stack, api *apiClient, cfg config) ([]Row, error) {
	var rows []Row
	peak := 0.0
	for _, l := range mixLoops {
		progress("phase 7: partner mix, %d in flight for %s", l.c, cfg.mixDuration)
		m := newMix(api, true)
		r := st.measureCPU(func() Row {
			return closedLoop(ctx, l.key, fmt.Sprintf("mix c=%d", l.c), m.call, l.c, cfg.mixDuration)
		})
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rows = append(rows, r)
		peak = max(peak, r.Rate)
	}
	if peak == 0 {
		return nil, fmt.Errorf("no call of the partner mix succeeded (errors %v)", rows[0].ErrorsBy)
	}
	progress("phase 7: partner mix, %.0f%% of %.0f/s for %s", mixShare*100, peak, cfg.mixDuration)
	m := newMix(api, false)
	rows = append(rows, st.measureCPU(func() Row {
		return openLoop(ctx, keyMixRate80, "mix rate 80%", m.call, peak*mixShare, cfg.mixDuration, cfg.maxInFlight)
	}))
	return rows, ctx.Err()
}

// rateFractions are the open-loop arrival rates of phase 3, as shares of the
// phase 2 maximum.
var rateFractions = []struct {
	key, label string
	share      float64
}{
	{keyRate25, "rate 25%", 0.25},
	{keyRate50, "rate 50%", 0.50},
	{keyRate75, "rate 75%", 0.75},
}

// progress tells the operator what runs now; it goes to stderr so that the
// report on stdout stays clean.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
