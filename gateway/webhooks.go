package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/config"
	"github.com/oneoffice/provisioner/shared/webhook"
)

// listLimit bounds the failed events one webhooks failed prints.
const listLimit = 1000

// webhooks runs a webhooks subcommand (README "Webhooks"):
//
//	webhooks set --partner NAME --url URL    print only the new signing secret
//	webhooks disable --partner NAME
//	webhooks test --partner NAME             send a ping event, print the endpoint's status
//	webhooks failed --partner NAME [--since DURATION]   list the failed events
//	webhooks replay --partner NAME --since DURATION     send the failed events again
func webhooks(ctx context.Context, cfg config.Config, db *pgxpool.Pool, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	fs := flag.NewFlagSet("webhooks "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	partner := fs.String("partner", "", "partner name")
	url := fs.String("url", "", "the endpoint's URL (set)")
	since := fs.Duration("since", 0, "how far back (failed, replay)")
	if err := fs.Parse(args[1:]); err != nil || *partner == "" || fs.NArg() > 0 {
		return errUsage
	}
	policy := webhook.Policy{AllowHosts: cfg.Webhook.AllowHosts}
	sealer, err := webhook.NewSealer(cfg.Webhook.SecretKey)
	if err != nil && !errors.Is(err, webhook.ErrNoKey) {
		return err
	}
	switch args[0] {
	case "set":
		if *url == "" {
			return errUsage
		}
		secret, err := webhook.SetEndpoint(ctx, db, sealer, policy, *partner, *url)
		if err == nil {
			fmt.Fprintln(stdout, secret)
		}
		return err
	case "disable":
		id, err := webhook.PartnerID(ctx, db, *partner)
		if err != nil {
			return err
		}
		return webhook.Disable(ctx, db, id, "disabled by an operator")
	case "test":
		return ping(ctx, cfg, db, sealer, policy, *partner, stdout)
	case "failed":
		return listFailed(ctx, db, *partner, *since, stdout)
	case "replay":
		if *since <= 0 {
			return errors.New("--since is required: a positive duration such as 24h")
		}
		id, err := webhook.PartnerID(ctx, db, *partner)
		if err != nil {
			return err
		}
		n, err := webhook.Replay(ctx, db, id, time.Now().Add(-*since))
		if err == nil {
			fmt.Fprintf(stdout, "events replayed: %d\n", n)
		}
		return err
	}
	return errUsage
}

// ping sends the partner's endpoint a ping event, as a delivery would, and
// prints the endpoint's status; an answer other than 2xx is an error.
func ping(ctx context.Context, cfg config.Config, db *pgxpool.Pool, s *webhook.Sealer, p webhook.Policy,
	name string, stdout io.Writer) error {
	id, err := webhook.PartnerID(ctx, db, name)
	if err != nil {
		return err
	}
	e, err := webhook.LoadEndpoint(ctx, db, s, id)
	if err != nil {
		return err
	}
	now := time.Now()
	msg := webhook.Message{ID: webhook.MessageID(uuid.NewString()),
		Body: []byte(`{"type":"ping","occurredAt":` + strconv.FormatInt(now.Unix(), 10) + `}`)}
	status, err := webhook.Send(ctx, p.Client(cfg.Webhook.Timeout), e.URL, e.Secret, msg, now)
	if err != nil {
		return fmt.Errorf("%s: %w", e.URL, err)
	}
	fmt.Fprintf(stdout, "%d %s\n", status, http.StatusText(status))
	if status < 200 || status > 299 {
		return fmt.Errorf("%s answered %d, not 2xx", e.URL, status)
	}
	if !e.Enabled {
		return errors.New("the endpoint answers, but it is disabled: webhooks set enables it again")
	}
	return nil
}

func listFailed(ctx context.Context, db *pgxpool.Pool, name string, since time.Duration, stdout io.Writer) error {
	id, err := webhook.PartnerID(ctx, db, name)
	if err != nil {
		return err
	}
	from := time.Time{}
	if since > 0 {
		from = time.Now().Add(-since)
	}
	failed, err := webhook.ListFailed(ctx, db, id, from, listLimit)
	for _, f := range failed {
		fmt.Fprintf(stdout, "%s\t%s\t%s\torder=%s\tattempts=%d\tlast_status=%d\t%s\n", f.ID,
			f.OccurredAt.UTC().Format(time.RFC3339), f.Type, f.OrderID, f.Attempts, f.LastStatus, f.LastError)
	}
	return err
}
