// Package preauth is `lab preauth`: it measures what a flood of made-up API keys does to a valid
// partner's calls: every unknown key is a database lookup unless the gateway
// stops it first, and this checks that the lookups stay one per key,
// bounded and under a deadline, and that a known key is never held up.
//
// It brings up its own isolated stack on the shared loopback servers with the
// tests' harness (shared/testenv): a fresh PostgreSQL database, a RabbitMQ
// vhost, a claimed Redis DB, one worker and one gateway built from this tree.
// It creates the partner's customer, then measures the partner's getCustomer
// latency at -probe-rate calls a second, first quiet, then while the same
// gateway receives -flood-rate calls a second with random keys (open loop,
// over -conns connections). It reports both, the random-key calls' statuses,
// the gateway's key lookups by result and its CPU, and tears the stack down
// on any exit, Ctrl-C included.
//
//	go run ./scripts/lab preauth [-duration 20s] [-flood-rate 5000] [-probe-rate 100]
//	                             [-conns 256] [-client-rps 0]
package preauth

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/oneoffice/provisioner/scripts/lab/load"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// config is the bench's command line.
type config struct {
	duration    time.Duration // each measured phase
	warmUp      time.Duration // the probe alone, unmeasured, before the first phase
	floodRate   float64       // random-key calls a second
	probeRate   float64       // the valid partner's calls a second
	conns       int           // connections of the flood
	maxInFlight int           // bound of each open loop
	clientRPS   float64       // CLIENT_RATE_LIMIT_RPS of the gateway

	stack load.StackFlags
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("preauth", flag.ContinueOnError)
	if err := c.stack.Register(fs); err != nil {
		return c, err
	}
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "length of each measured phase (quiet, flood)")
	fs.DurationVar(&c.warmUp, "warmup", 3*time.Second, "unmeasured probe calls before the first phase")
	fs.Float64Var(&c.floodRate, "flood-rate", 5000, "calls a second with random keys during the flood")
	fs.Float64Var(&c.probeRate, "probe-rate", 100, "the valid partner's getCustomer calls a second")
	fs.IntVar(&c.conns, "conns", 256, "connections the flood is sent over")
	fs.IntVar(&c.maxInFlight, "max-inflight", 4096, "most calls outstanding per stream (more are shed and counted)")
	fs.Float64Var(&c.clientRPS, "client-rps", 0, "CLIENT_RATE_LIMIT_RPS of the gateway (0: off; the flood and the partner share 127.0.0.1)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.duration <= 0 || c.floodRate < 0 || c.probeRate <= 0 || c.conns < 1 || c.maxInFlight < 1 || c.clientRPS < 0 {
		return c, errors.New("-duration, -probe-rate, -conns and -max-inflight must be positive; -flood-rate and -client-rps at least 0")
	}
	return c, c.stack.Validate()
}

// Run runs the bench with the command line args. `make preauth-bench`
// launches it with the GODEBUG setting of scripts/lib/godebug.sh, which the
// processes inherit.
func Run(ctx context.Context, args []string) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	return bench(ctx, cfg)
}

// The bodies the bench sends, named from the protocol's registry.
var (
	createCustomer = `{"method":"` + protocol.CreateCustomer + `","params":{"id":"C1","name":"Preauth Co","admin":{"email":"admin@example.com"}}}`
	getCustomer    = `{"method":"` + protocol.GetCustomer + `","params":{"id":"C1"}}`
)

func bench(ctx context.Context, cfg config) (err error) {
	st, err := cfg.stack.Up(ctx, testenv.StackConfig{Name: "preauth", Workers: 1,
		Env: []string{"CLIENT_RATE_LIMIT_RPS=" + strconv.FormatFloat(cfg.clientRPS, 'f', -1, 64)}}, progress)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close(testenv.DefaultCloseTimeout)) }()
	setup := newCaller(st.HTTPAddr, 1, []byte(createCustomer))
	if status := setup.call(st.Key); status != "200" {
		return fmt.Errorf("createCustomer: status %s, want 200", status)
	}
	probe := newCaller(st.HTTPAddr, 8, []byte(getCustomer))
	flood := newCaller(st.HTTPAddr, cfg.conns, []byte(getCustomer))
	progress("warm-up: %s", cfg.warmUp)
	if _, _, err := phase(ctx, cfg, probe, flood, st.Key, cfg.warmUp, 0); err != nil {
		return err
	}
	rep := report{cfg: cfg}
	for _, p := range []struct {
		name  string
		flood float64
	}{{"quiet", 0}, {"flood", cfg.floodRate}} {
		progress("%s: %s", p.name, cfg.duration)
		before, err := scrape(ctx, st.Gateway.Metrics)
		if err != nil {
			return err
		}
		self0 := testenv.SelfCPU()
		all0, idle0, _, err := testenv.MachineCPU()
		if err != nil {
			return err
		}
		good, bad, err := phase(ctx, cfg, probe, flood, st.Key, cfg.duration, p.flood)
		if err != nil {
			return err
		}
		all1, idle1, _, err := testenv.MachineCPU()
		if err != nil {
			return err
		}
		after, err := scrape(ctx, st.Gateway.Metrics)
		if err != nil {
			return err
		}
		busy := float64((all1 - all0) - (idle1 - idle0))
		rep.phases = append(rep.phases, phaseResult{name: p.name, flood: p.flood, good: good, bad: bad,
			gateway: after.minus(before), machine: busy / float64(all1-all0),
			self: (testenv.SelfCPU() - self0).Seconds() / cfg.duration.Seconds()})
	}
	rep.print(os.Stdout)
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "preauth: "+format+"\n", args...)
}
