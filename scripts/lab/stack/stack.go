// Package stack is `lab stack`: an isolated stack (testenv.UpStack) for a
// command (scripts/load.sh runs k6 on it, scripts/prom-check.sh itself).
// Once the stack serves it runs the command with the stack's settings added
// to its environment, and when the command exits (or this program is
// signalled) removes the stack and exits with the command's status. The
// processes get this program's environment: what the script exports
// (RPC_TIMEOUT, ...) reaches them.
//
//	lab stack [-name load] [-workers 2] [-webhooks] [-keep] -- COMMAND [ARGS...]
//
// The settings: STACK_NAME (the database and vhost), DATABASE_URL,
// AMQP_URL, REDIS_URL, HTTP_ADDR, BASE_URL, API_KEY, PARTNER,
// GATEWAY_METRICS, WORKER_METRICS (space-separated), STACK_DIR (the process
// logs) and SPARE_ADDR, a free loopback address for a server of the
// command's own (testenv.PickAddr); GATEWAY_BIN (the stack's gateway
// binary, for admin subcommands) and WEBHOOK_SECRET_KEY (the stack's).
//
// With -webhooks the partner's endpoint is a receiver of this program
// (testenv.WebhookReceiver). At the end it waits up to a minute for the
// outbox to drain, prints the delivery latency and what the receiver got,
// and exits 3 if an event of the ledger was not delivered exactly once with
// a good signature.
package stack

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// ErrWebhooks fails a run whose webhook events were not all delivered once.
var ErrWebhooks = errors.New("webhooks: want every ledger row's event delivered once, signed")

// Run brings the stack up with the command line args and runs the command
// on it.
func Run(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("stack", flag.ContinueOnError)
	name := fs.String("name", "stack", "names the database, vhost and partner (lower-case letters, digits, _)")
	workers := fs.Int("workers", 2, "worker processes")
	webhooks := fs.Bool("webhooks", false, "give the partner a webhook endpoint and check every event arrived once")
	keep := fs.Bool("keep", false, "keep the work directory (process logs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: lab stack [flags] -- COMMAND [ARGS...]")
	}
	srv, err := testenv.FromEnv()
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "lab stack: "+format+"\n", args...) }
	srv.Logf = logf
	// Their own process group: a Ctrl-C to the script reaches this program
	// through the script's trap, which stops them in order.
	sc := testenv.StackConfig{Name: *name, Workers: *workers, LogFiles: true, Keep: *keep,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}}
	if *webhooks {
		sc.Env = append(sc.Env, "WEBHOOK_ALLOW_HOSTS=127.0.0.1")
	}
	st, err := srv.UpStack(ctx, sc)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close(0)) }()
	var recv *testenv.WebhookReceiver
	if *webhooks {
		if recv, err = startReceiver(ctx, st, *name); err != nil {
			return err
		}
		defer recv.Close(context.Background())
	}
	env, err := settings(st, *name)
	if err != nil {
		return err
	}
	logf("stack %s up: API %s, Redis DB %d, logs in %s", st.Name, st.URL(), st.RedisDB, st.Dir)
	cmd := exec.CommandContext(ctx, fs.Arg(0), fs.Args()[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = append(os.Environ(), env...), os.Stdout, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmdErr := cmd.Run()
	for _, p := range slices.Concat(st.Workers, st.Gateways) {
		if p.Exited() {
			logf("%s died during the run; logs kept in %s", p.Name, st.Dir)
			st.KeepDir()
		}
	}
	if cmdErr == nil && recv != nil {
		return checkWebhooks(st, recv, logf)
	}
	return cmdErr
}

func startReceiver(ctx context.Context, st *testenv.Stack, partner string) (*testenv.WebhookReceiver, error) {
	recv, err := testenv.StartWebhookReceiver()
	if err != nil {
		return nil, err
	}
	secret, err := st.Admin(ctx, "webhooks", "set", "--partner", partner, "--url", recv.URL)
	if err == nil {
		err = recv.SetSecret(secret)
	}
	if err != nil {
		recv.Close(ctx)
		return nil, fmt.Errorf("webhooks set: %w", err)
	}
	return recv, nil
}

// settings are the stack's settings as NAME=value.
func settings(st *testenv.Stack, partner string) ([]string, error) {
	spare, err := testenv.PickAddr()
	if err != nil {
		return nil, err
	}
	var metrics []string
	for _, w := range st.Workers {
		metrics = append(metrics, w.Metrics)
	}
	return []string{"STACK_NAME=" + st.Name, "DATABASE_URL=" + st.DatabaseURL, "AMQP_URL=" + st.AMQPURL,
		"REDIS_URL=" + st.RedisURL, "HTTP_ADDR=" + st.HTTPAddr, "BASE_URL=http://" + st.HTTPAddr,
		"API_KEY=" + st.Key, "PARTNER=" + partner, "GATEWAY_METRICS=" + st.Gateway.Metrics,
		"WORKER_METRICS=" + strings.Join(metrics, " "), "STACK_DIR=" + st.Dir, "SPARE_ADDR=" + spare,
		"GATEWAY_BIN=" + st.Bins.Gateway(), "WEBHOOK_SECRET_KEY=" + testenv.WebhookKey}, nil
}

// checkWebhooks waits for the outbox to drain and compares the events with
// the ledger and what the receiver got.
func checkWebhooks(st *testenv.Stack, recv *testenv.WebhookReceiver, logf func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db, err := pgxpool.New(ctx, st.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	// Up to a minute for the outbox to drain; what is left is counted below.
	drain, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	backoff.Retry(func() error {
		var pending int
		if err := db.QueryRow(drain, `SELECT count(*) FROM webhook_events WHERE status = 'pending'`).Scan(&pending); err != nil || pending > 0 {
			return fmt.Errorf("%d events pending (%v)", pending, err)
		}
		return nil
	}, backoff.WithContext(backoff.NewConstantBackOff(100*time.Millisecond), drain))
	var delivered, undelivered, ledger int
	var p50, p99, most float64
	err = db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status <> 'delivered'),
		(SELECT count(*) FROM command_ledger),
		coalesce(1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY delivered_at - occurred_at)), 0),
		coalesce(1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY delivered_at - occurred_at)), 0),
		coalesce(1000 * extract(epoch FROM max(delivered_at - occurred_at)), 0)
		FROM webhook_events`).Scan(&delivered, &undelivered, &ledger, &p50, &p99, &most)
	if err != nil {
		return err
	}
	got := recv.Counts()
	logf("webhooks: %d events delivered, %d not, for %d ledger rows; delivery latency p50 %.0f ms, p99 %.0f ms, max %.0f ms; %s",
		delivered, undelivered, ledger, p50, p99, most, got)
	want := testenv.WebhookCounts{Requests: delivered, DistinctIDs: delivered}
	if undelivered != 0 || delivered != ledger || got != want {
		st.KeepDir()
		return fmt.Errorf("%w (%s)", ErrWebhooks, want)
	}
	return nil
}
