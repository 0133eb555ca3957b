// Command gateway serves the OneOffice provisioning API, and with arguments
// runs the admin commands of SPEC section 9:
//
//	gateway                           serve the API
//	gateway migrate                   apply the database migrations
//	gateway keys create --partner N   create partner N if needed and a key; print only the key
//	  [--signing]                     also issue N's signing secret (replacing any): the key on the
//	                                  first line, the secret on the second, nothing else
//	gateway keys revoke KEY           revoke a key
//	gateway dlq list [N]              show up to N dead-lettered commands (default 100)
//	gateway dlq replay [N]            put up to N dead-lettered commands back on the queue
//	gateway webhooks set --partner N --url URL   set N's endpoint; print only its new signing secret
//	gateway webhooks disable --partner N         stop N's events
//	gateway webhooks test --partner N            send N's endpoint a ping; print its status
//	gateway webhooks failed --partner N [--since D]   list N's failed events
//	gateway webhooks replay --partner N --since D     send N's events failed in the last D again
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/oneoffice/provisioner/gateway/internal/app"
	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/gateway/internal/dlq"
	"github.com/oneoffice/provisioner/shared/config"
	"github.com/oneoffice/provisioner/shared/logging"
	"github.com/oneoffice/provisioner/shared/store"
)

const usage = `usage:
  gateway                           serve the API
  gateway migrate                   apply the database migrations
  gateway keys create --partner NAME [--signing]
  gateway keys revoke KEY
  gateway dlq list [N]
  gateway dlq replay [N]
  gateway webhooks set --partner NAME --url URL
  gateway webhooks disable --partner NAME
  gateway webhooks test --partner NAME
  gateway webhooks failed --partner NAME [--since DURATION]
  gateway webhooks replay --partner NAME --since DURATION
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
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
		if err := app.Serve(ctx, cfg, log); err != nil {
			log.Error("gateway failed", "error", err)
			return 1
		}
		return 0
	}
	if err := admin(ctx, cfg, args, stdout); err != nil {
		fmt.Fprintf(stderr, "gateway %s: %v\n", args[0], err)
		if err == errUsage {
			fmt.Fprint(stderr, usage)
		}
		return 2
	}
	return 0
}

var errUsage = fmt.Errorf("bad arguments")

// admin runs an admin subcommand; only its result goes to stdout.
func admin(ctx context.Context, cfg config.Config, args []string, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if args[0] == "dlq" {
		return deadLetters(ctx, cfg, args[1:], stdout)
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	switch {
	case args[0] == "migrate" && len(args) == 1:
		n, err := store.Migrate(ctx, db)
		if err == nil {
			fmt.Fprintf(stdout, "migrations applied: %d\n", n)
		}
		return err
	case len(args) >= 2 && args[0] == "keys" && args[1] == "create":
		fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
		partner := fs.String("partner", "", "partner name")
		signed := fs.Bool("signing", false, "also issue the partner's signing secret, replacing any")
		if err := fs.Parse(args[2:]); err != nil || *partner == "" {
			return errUsage
		}
		if _, err := store.Migrate(ctx, db); err != nil {
			return err
		}
		if *signed {
			key, secret, err := auth.CreateSigningKey(ctx, db, *partner)
			if err == nil {
				fmt.Fprintf(stdout, "%s\n%s\n", key, secret)
			}
			return err
		}
		key, err := auth.CreateKey(ctx, db, *partner)
		if err == nil {
			fmt.Fprintln(stdout, key)
		}
		return err
	case args[0] == "webhooks":
		return webhooks(ctx, cfg, db, args[1:], stdout)
	case len(args) == 3 && args[0] == "keys" && args[1] == "revoke":
		key := args[2]
		if key == "-" {
			// From standard input the key stays out of the process list and
			// the shell's history. A key is short: more is not a key.
			b, err := io.ReadAll(io.LimitReader(os.Stdin, 4096))
			if err != nil {
				return fmt.Errorf("reading the key from standard input: %w", err)
			}
			key = strings.TrimSpace(string(b))
		}
		if key == "" {
			return errors.New("no key given: pass the key, or - and the key on standard input")
		}
		err := auth.RevokeKey(ctx, db, key)
		if errors.Is(err, store.ErrNotFound) {
			return errors.New("no live key matches: the key is unknown or already revoked")
		}
		return err
	}
	return errUsage
}

func deadLetters(ctx context.Context, cfg config.Config, args []string, stdout io.Writer) error {
	limit := 100
	if len(args) == 2 {
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 {
			return errUsage
		}
		limit = n
	}
	switch {
	case len(args) >= 1 && len(args) <= 2 && args[0] == "list":
		return dlq.List(ctx, cfg.AMQPURL, limit, stdout)
	case len(args) >= 1 && len(args) <= 2 && args[0] == "replay":
		return dlq.Replay(ctx, cfg.AMQPURL, limit, stdout)
	}
	return errUsage
}
