// Command chaos runs the fault suite (make chaos, through scripts/chaos.sh):
// the provisioner under partner-like load of every method while its
// processes and servers fail, one fault at a time, and then checks from
// PostgreSQL and the command ledger that no answer was a lie.
//
// The servers are private to the run, so that they may be restarted and
// flushed: a RabbitMQ node (testenv.StartRabbitNode, with a heartbeat of
// a few seconds so that a frozen worker is dropped soon), a redis-server
// and a PostgreSQL cluster on free loopback ports. On them runs a stack of
// one gateway and three workers (testenv.UpStack) with two partners. The
// faults, each a phase of the load:
//
//   - a worker killed with SIGKILL, then a replacement started;
//   - a worker stopped with SIGTERM (it must drain and exit cleanly), then
//     a replacement started;
//   - a worker frozen with SIGSTOP until the broker drops its connection,
//     then continued with SIGCONT: it must serve again by itself;
//   - poison messages, malformed and forged commands published straight to
//     the command queue: each must be dead-lettered and change nothing;
//   - a broker memory alarm, raised and cleared;
//   - the broker restarted;
//   - Redis flushed, then Redis restarted (empty);
//   - PostgreSQL restarted.
//
// After the load it lets the command queue drain and checks that every call
// answered 200 or 202 took effect exactly once and every 503 took none (in
// the resources and the ledger), that the last answered state of every order
// is the one in the database, that no call waited past RPC_TIMEOUT + 1s, and
// that after each fault the gateway served again within 20s without any
// process restarted. It prints the figures per fault, names the failing call
// of any violation and exits 1 then. Everything it started is removed on
// any exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Limits the run is judged by.
const (
	// maxRecovery is how soon after a fault the gateway must serve again.
	maxRecovery = 20 * time.Second
	// overRPCTimeout is how far past RPC_TIMEOUT a call may take.
	overRPCTimeout = time.Second
	// drainLimit bounds the wait for the queue to empty after the load.
	drainLimit = 90 * time.Second
	// heartbeat is the AMQP heartbeat the broker offers, in seconds: the
	// clients take the smaller of theirs and it, and the broker drops a
	// connection silent for about twice as long.
	heartbeat = 3
)

type config struct {
	tag        string // in every id, request id and name the run makes
	rate       float64
	phase      time.Duration
	rpcTimeout time.Duration
	flows      int
	keep       bool
	only       map[string]bool // the faults to run; nil: all
}

func main() { os.Exit(run()) }

func run() int {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	r := &runner{cfg: cfg}
	err = r.scenario(ctx)
	if terr := r.td.Run(3 * time.Minute); terr != nil {
		err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
	}
	r.print(os.Stdout, time.Since(started))
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: FAIL:", err)
		return 1
	}
	fmt.Println("chaos: PASS")
	return 0
}

func parseFlags() (*config, error) {
	cfg := &config{}
	flag.StringVar(&cfg.tag, "tag", fmt.Sprintf("chaos%d", os.Getpid()), "names the ids and request ids of the run (lower-case letters and digits)")
	flag.Float64Var(&cfg.rate, "rate", 150, "calls per second offered")
	flag.DurationVar(&cfg.phase, "phase", 10*time.Second, "length of each fault's phase")
	flag.DurationVar(&cfg.rpcTimeout, "rpc-timeout", 4*time.Second, "RPC_TIMEOUT of the gateway")
	flag.IntVar(&cfg.flows, "flows", 32, "partner flows running at once")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the stack's work directory (process logs)")
	only := flag.String("faults", "", "comma-separated faults to run, of "+strings.Join(faultNames(), ", ")+" (default all)")
	flag.Parse()
	if *only != "" {
		cfg.only = map[string]bool{}
		for _, f := range strings.Split(*only, ",") {
			if !slices.Contains(faultNames(), f) {
				return nil, fmt.Errorf("-faults: no fault %q (%s)", f, strings.Join(faultNames(), ", "))
			}
			cfg.only[f] = true
		}
	}
	for _, c := range cfg.tag {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return nil, fmt.Errorf("-tag %q: lower-case letters and digits only", cfg.tag)
		}
	}
	if cfg.phase < 4*time.Second {
		return nil, fmt.Errorf("-phase %s: want 4s or more", cfg.phase)
	}
	return cfg, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "chaos: %s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}
