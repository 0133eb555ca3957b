// Command gateway serves the OneOffice provisioning API. With arguments it
// runs one of the admin commands of SPEC section 9, listed with their
// arguments in the table commands below; a call it does not understand
// prints that list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/gateway/internal/app"
	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/gateway/internal/dlq"
	"github.com/oneoffice/provisioner/shared/config"
	"github.com/oneoffice/provisioner/shared/logging"
	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/tracing"
)

// env is what an admin command works with. Only its result goes to stdout.
type env struct {
	cfg    config.Config
	db     *pgxpool.Pool // nil for a command that does not need the database
	stdin  io.Reader
	stdout io.Writer
}

// command is one admin command: the words that name it, its arguments and
// what it does (for the usage text), and how it runs with the arguments
// after its name.
type command struct {
	name, args, does string
	noDB             bool // it does not open the database
	run              func(ctx context.Context, e env, args []string) error
}

var commands = []command{
	{name: "migrate", does: "apply the database migrations", run: migrate},
	{name: "keys create", args: "--partner NAME [--signing]", run: createKey,
		does: "create the partner if needed and a key; print only the key (--signing: then its new signing secret)"},
	{name: "keys revoke", args: "KEY|-", does: "revoke a key (-: read it from standard input)", run: revokeKey},
	{name: "dlq list", args: "[N]", does: "show up to N dead-lettered commands (default 100)", noDB: true,
		run: deadLetters(dlq.List)},
	{name: "dlq replay", args: "[N]", does: "put up to N dead-lettered commands back on the queue", noDB: true,
		run: deadLetters(dlq.Replay)},
	{name: "webhooks set", args: "--partner NAME --url URL", does: "set the endpoint; print only its new signing secret",
		run: webhooks(setEndpoint)},
	{name: "webhooks disable", args: "--partner NAME", does: "stop the partner's events", run: webhooks(disable)},
	{name: "webhooks test", args: "--partner NAME", does: "send the endpoint a ping; print its status", run: webhooks(ping)},
	{name: "webhooks failed", args: "--partner NAME [--since DURATION]", does: "list the failed events",
		run: webhooks(listFailed)},
	{name: "webhooks replay", args: "--partner NAME --since DURATION", does: "send the events failed since then again",
		run: webhooks(replay)},
}

// errUsage is a call the table does not understand: the usage text follows it.
var errUsage = errors.New("bad arguments")

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := config.Load(os.Getenv, config.DefaultGatewayMetrics)
	if err != nil {
		fmt.Fprintf(stderr, "gateway: invalid configuration:\n%v\n", err)
		return 2
	}
	if len(args) == 0 {
		out := logging.NewWriter(stdout)
		defer out.Close()
		log := logging.New(out, cfg.LogLevel, "gateway")
		cfg.ApplyRuntime()
		tp, err := tracing.Setup(ctx, os.Getenv, "oneoffice-gateway")
		if err != nil {
			fmt.Fprintf(stderr, "gateway: invalid tracing configuration: %v\n", err)
			return 2
		}
		defer tracing.Flush(tp, log)
		if err := app.Serve(ctx, cfg, log, tp); err != nil {
			log.Error("gateway failed", "error", err)
			return 1
		}
		return 0
	}
	if err := admin(ctx, env{cfg: cfg, stdin: stdin, stdout: stdout}, args); err != nil {
		fmt.Fprintf(stderr, "gateway %s: %v\n", args[0], err)
		if errors.Is(err, errUsage) {
			usage(stderr)
		}
		return 2
	}
	return 0
}

// admin runs the command of the table that args name.
func admin(ctx context.Context, e env, args []string) error {
	i := slices.IndexFunc(commands, func(c command) bool {
		words := strings.Fields(c.name)
		return len(args) >= len(words) && slices.Equal(args[:len(words)], words)
	})
	if i < 0 {
		return errUsage
	}
	c := commands[i]
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if !c.noDB {
		db, err := store.Open(ctx, e.cfg.DatabaseURL, 2)
		if err != nil {
			return err
		}
		defer db.Close()
		e.db = db
	}
	return c.run(ctx, e, args[len(strings.Fields(c.name)):])
}

func usage(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "usage:\n  gateway\t\tserve the API")
	for _, c := range commands {
		fmt.Fprintf(tw, "  gateway %s\t%s\t%s\n", c.name, c.args, c.does)
	}
	tw.Flush()
}

// parseFlags parses args into fs, its own messages left out: a bad flag is
// errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

func migrate(ctx context.Context, e env, args []string) error {
	if len(args) != 0 {
		return errUsage
	}
	n, err := store.Migrate(ctx, e.db)
	if err == nil {
		fmt.Fprintf(e.stdout, "migrations applied: %d\n", n)
	}
	return err
}

func createKey(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
	partner := fs.String("partner", "", "partner name")
	signed := fs.Bool("signing", false, "also issue the partner's signing secret, replacing any")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *partner == "" {
		return errUsage
	}
	if _, err := store.Migrate(ctx, e.db); err != nil {
		return err
	}
	if *signed {
		key, secret, err := auth.CreateSigningKey(ctx, e.db, *partner)
		if err == nil {
			fmt.Fprintf(e.stdout, "%s\n%s\n", key, secret)
		}
		return err
	}
	key, err := auth.CreateKey(ctx, e.db, *partner)
	if err == nil {
		fmt.Fprintln(e.stdout, key)
	}
	return err
}

func revokeKey(ctx context.Context, e env, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	key := args[0]
	if key == "-" {
		// From standard input the key stays out of the process list and
		// the shell's history. A key is short: more is not a key.
		b, err := io.ReadAll(io.LimitReader(e.stdin, 4096))
		if err != nil {
			return fmt.Errorf("reading the key from standard input: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	if key == "" {
		return errors.New("no key given: pass the key, or - and the key on standard input")
	}
	err := auth.RevokeKey(ctx, e.db, key)
	if errors.Is(err, store.ErrNotFound) {
		return errors.New("no live key matches: the key is unknown or already revoked")
	}
	return err
}

// deadLetters runs a dlq command on up to N dead-lettered commands.
func deadLetters(do func(ctx context.Context, amqpURL string, limit int, out io.Writer) error) func(context.Context, env, []string) error {
	return func(ctx context.Context, e env, args []string) error {
		limit := 100
		switch len(args) {
		case 0:
		case 1:
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return errUsage
			}
			limit = n
		default:
			return errUsage
		}
		return do(ctx, e.cfg.AMQPURL, limit, e.stdout)
	}
}
