package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/shared/audit"
	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/webhook"
)

// listLimit bounds the failed events one webhooks failed prints.
const listLimit = 1000

// hook is what a webhooks command works with (README "Webhooks"): its
// flags, and the key and policy of the partners' endpoints.
type hook struct {
	env
	partner, url string
	test         bool // the partner's test (sandbox) endpoint
	since        time.Duration
	sealer       *webhook.Sealer
	policy       webhook.Policy
}

// webhooks runs a webhooks command: --partner NAME is required, --url and
// --since are the commands' own.
func webhooks(do func(context.Context, hook) error) func(context.Context, env, []string) error {
	return func(ctx context.Context, e env, args []string) error {
		h := hook{env: e, policy: webhook.Policy{AllowHosts: e.cfg.Webhook.AllowHosts}}
		fs := flag.NewFlagSet("webhooks", flag.ContinueOnError)
		fs.StringVar(&h.partner, "partner", "", "partner name")
		fs.StringVar(&h.url, "url", "", "the endpoint's URL (set)")
		fs.DurationVar(&h.since, "since", 0, "how far back (failed, replay)")
		fs.BoolVar(&h.test, "test", false, "the partner's test endpoint, for the calls of its test keys")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if h.partner == "" || fs.NArg() > 0 {
			return errUsage
		}
		var err error
		if h.sealer, err = webhook.NewSealer(e.cfg.Webhook.SecretKey); err != nil && !errors.Is(err, webhook.ErrNoKey) {
			return err
		}
		return do(ctx, h)
	}
}

// partnerID is the id of the partner the command is about: the live one,
// or with --test its test partner, which set makes if it is missing.
func (h hook) partnerID(ctx context.Context, db webhook.Conn) (int64, error) {
	id, err := webhook.PartnerID(ctx, db, h.partner)
	if err != nil || !h.test {
		return id, err
	}
	if tx, ok := db.(pgx.Tx); ok && h.url != "" {
		return auth.EnsurePartner(ctx, tx, h.partner, true)
	}
	var test int64
	err = db.QueryRow(ctx, `SELECT id FROM partners WHERE live_partner_id = $1`, id).Scan(&test)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("partner %q has no test partner yet (keys create --test or webhooks set --test makes it)", h.partner)
	}
	return test, err
}

// audited runs do in a transaction with the command's audit entry.
func (h hook) audited(ctx context.Context, action, target string, do func(tx pgx.Tx, partner int64) (string, error)) error {
	return store.WithTx(ctx, h.db, func(tx pgx.Tx) error {
		id, err := h.partnerID(ctx, tx)
		if err != nil {
			return err
		}
		detail, err := do(tx, id)
		if err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: audit.OSUser(), Action: action, Partner: id, Target: target, Detail: detail})
	})
}

func setEndpoint(ctx context.Context, h hook) error {
	if h.url == "" {
		return errUsage
	}
	var secret string
	err := h.audited(ctx, "webhooks set", h.url, func(tx pgx.Tx, id int64) (_ string, err error) {
		secret, err = webhook.SetPartnerEndpoint(ctx, tx, h.sealer, h.policy, id, h.url)
		return "new signing secret", err
	})
	if err == nil {
		fmt.Fprintln(h.stdout, secret)
	}
	return err
}

func disable(ctx context.Context, h hook) error {
	return h.audited(ctx, "webhooks disable", "", func(tx pgx.Tx, id int64) (string, error) {
		return "", webhook.DisableTx(ctx, tx, id, "disabled by an operator")
	})
}

// ping sends the partner's endpoint a ping event, as a delivery would, and
// prints the endpoint's status; an answer other than 2xx is an error.
func ping(ctx context.Context, h hook) error {
	id, err := h.partnerID(ctx, h.db)
	if err != nil {
		return err
	}
	e, err := webhook.LoadEndpoint(ctx, h.db, h.sealer, id)
	if err != nil {
		return err
	}
	now := time.Now()
	msg := webhook.Message{ID: webhook.MessageID(uuid.NewString()),
		Body: []byte(`{"type":"ping","occurredAt":` + strconv.FormatInt(now.Unix(), 10) + `}`)}
	status, err := webhook.Send(ctx, h.policy.Client(h.cfg.Webhook.Timeout), e.URL, e.Secret, msg, now)
	if err != nil {
		return fmt.Errorf("%s: %w", e.URL, err)
	}
	fmt.Fprintf(h.stdout, "%d %s\n", status, http.StatusText(status))
	if err := store.WithTx(ctx, h.db, func(tx pgx.Tx) error {
		return audit.Record(ctx, tx, audit.Entry{Actor: audit.OSUser(), Action: "webhooks test", Partner: id,
			Target: e.URL, Detail: fmt.Sprintf("answered %d", status)})
	}); err != nil {
		return err
	}
	if status < 200 || status > 299 {
		return fmt.Errorf("%s answered %d, not 2xx", e.URL, status)
	}
	if !e.Enabled {
		return errors.New("the endpoint answers, but it is disabled: webhooks set enables it again")
	}
	return nil
}

func listFailed(ctx context.Context, h hook) error {
	id, err := h.partnerID(ctx, h.db)
	if err != nil {
		return err
	}
	from := time.Time{}
	if h.since > 0 {
		from = time.Now().Add(-h.since)
	}
	failed, err := webhook.ListFailed(ctx, h.db, id, from, listLimit)
	for _, f := range failed {
		fmt.Fprintf(h.stdout, "%s\t%s\t%s\torder=%s\tattempts=%d\tlast_status=%d\t%s\n", f.ID,
			f.OccurredAt.UTC().Format(time.RFC3339), f.Type, f.OrderID, f.Attempts, f.LastStatus, f.LastError)
	}
	return err
}

func replay(ctx context.Context, h hook) error {
	if h.since <= 0 {
		return errors.New("--since is required: a positive duration such as 24h")
	}
	var n int64
	err := h.audited(ctx, "webhooks replay", "", func(tx pgx.Tx, id int64) (_ string, err error) {
		n, err = webhook.Replay(ctx, tx, id, time.Now().Add(-h.since))
		return fmt.Sprintf("since %s: %d events", h.since, n), err
	})
	if err == nil {
		fmt.Fprintf(h.stdout, "events replayed: %d\n", n)
	}
	return err
}
