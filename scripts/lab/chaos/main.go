// Package chaos is `lab chaos`, the fault suite (make chaos):
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
package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
)

// heartbeat is the AMQP heartbeat the broker offers, in seconds: the
// clients take the smaller of theirs and it, and the broker drops a
// connection silent for about twice as long.
const heartbeat = 3

var logf = partnerload.Logger("chaos")

type config struct {
	partnerload.Flags
	only map[string]bool // the faults to run; nil: all
}

// Run runs the suite with the command line args; it fails if a check does.
func Run(ctx context.Context, args []string) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	started := time.Now()
	r := &runner{cfg: cfg}
	err = r.scenario(ctx)
	if terr := r.td.Run(3 * time.Minute); terr != nil {
		err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
	}
	r.print(os.Stdout, time.Since(started))
	if err != nil {
		return fmt.Errorf("FAIL: %w", err)
	}
	fmt.Println("chaos: PASS")
	return nil
}

func parseFlags(args []string) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	cfg.Register(fs, "chaos", 150, 32)
	only := fs.String("faults", "", "comma-separated faults to run, of "+strings.Join(faultNames(), ", ")+" (default all)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *only != "" {
		cfg.only = map[string]bool{}
		for _, f := range strings.Split(*only, ",") {
			if !slices.Contains(faultNames(), f) {
				return nil, fmt.Errorf("-faults: no fault %q (%s)", f, strings.Join(faultNames(), ", "))
			}
			cfg.only[f] = true
		}
	}
	if cfg.Phase < 4*time.Second {
		return nil, fmt.Errorf("-phase %s: want 4s or more", cfg.Phase)
	}
	return cfg, cfg.Validate()
}
