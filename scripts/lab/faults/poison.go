package faults

import (
	"context"
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// poisonRun is what the poison phase published.
type poisonRun struct {
	kinds    []string // one per message
	dlqFirst int      // the dead-letter queue's depth before
}

// poison is one malformed or forged command.
type poison struct {
	kind string
	msg  amqp.Publishing
}

// poisonMessages are commands no gateway sends: undecodable, or decodable
// but not holding together (the worker's trust rules, SPEC section 4). Each
// names a customer id that must never exist, under partner a (b is another
// partner).
func (r *run) poisonMessages(a, b int64) []poison {
	id := func(i int) string { return fmt.Sprintf("p%sx%d", r.cfg.Tag, i) }
	body := func(i int) []byte {
		return protocol.Canonical(&protocol.CreateCustomerParams{ID: id(i), Name: "Poison " + id(i),
			Admin: &protocol.Admin{Email: "admin@" + id(i) + ".example.com"}})
	}
	fp := func(i int) string { return idempotency.Fingerprint(protocol.CreateCustomer, body(i)) }
	keyed := func(partner int64, key string, derived bool, fp string) amqp.Table {
		return amqp.Table{protocol.HeaderIdemKey: idempotency.Key(partner, key, derived),
			protocol.HeaderIdemToken: idempotency.NewToken(), protocol.HeaderIdemFP: fp}
	}
	list := []struct {
		kind    string
		method  string
		body    []byte
		headers amqp.Table
		partner any
	}{
		{"unknown method", "dropTables", []byte("not json"), nil, a},
		{"no partner header", protocol.CreateCustomer, body(2), nil, nil},
		{"partner header as text", protocol.CreateCustomer, body(3), nil, "1"},
		{"key of another partner", protocol.CreateCustomer, body(4), keyed(b, "customer:"+id(4), true, fp(4)), a},
		{"forged fingerprint", protocol.CreateCustomer, body(5), keyed(a, "customer:"+id(5), true, fp(55)), a},
		{"derived key of other params", protocol.CreateCustomer, body(6), keyed(a, "customer:"+id(66), true, fp(6)), a},
		{"idempotency headers in part", protocol.CreateCustomer, body(7),
			amqp.Table{protocol.HeaderIdemKey: idempotency.Key(a, "customer:"+id(7), true)}, a},
		{"body over any call's", protocol.CreateCustomer, []byte(`{"id":"` + id(8) + `","name":"` +
			strings.Repeat("x", protocol.MaxBody) + `"}`), nil, a},
		{"keyed params that do not validate", protocol.CreateCustomer, []byte(`{"id":"` + id(9) + `"}`),
			keyed(a, "k-"+id(9), false, fp(9)), a},
		{"read with a key", protocol.GetCustomer, []byte(`{"id":"` + id(10) + `"}`), keyed(a, "k-"+id(10), false, fp(10)), a},
	}
	var out []poison
	for i, p := range list {
		h := amqp.Table{protocol.HeaderRequestID: fmt.Sprintf("poison-%s-%d", r.cfg.Tag, i+1),
			protocol.HeaderCommandID: fmt.Sprintf("poison-%s-%d", r.cfg.Tag, i+1)}
		if p.partner != nil {
			h[protocol.HeaderPartner] = p.partner
		}
		for k, v := range p.headers {
			h[k] = v
		}
		out = append(out, poison{p.kind, amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent,
			Type: p.method, Timestamp: time.Now(), Headers: h, Body: p.body, MessageId: fmt.Sprintf("poison-%d", i+1)}})
	}
	return out
}

// publishPoison publishes the poison messages straight to the command
// exchange, confirmed, and waits until the dead-letter queue holds them all.
func publishPoison(ctx context.Context, r *run, fr *faultRun) error {
	q, err := r.queue(ctx, amqpx.DeadQueue)
	if err != nil {
		return err
	}
	msgs := r.poisonMessages(r.st.Load.Partners[0].ID, r.st.Load.Partners[1].ID)
	r.poison = &poisonRun{dlqFirst: q.Messages}
	conn, err := amqp.Dial(r.st.AMQPURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	for _, p := range msgs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, amqpx.Exchange, amqpx.RoutingKey, true, false, p.msg)
		if err != nil {
			return fmt.Errorf("publish %s: %w", p.kind, err)
		}
		if ok, err := dc.WaitContext(ctx); err != nil || !ok {
			return fmt.Errorf("publish %s: not confirmed (%v)", p.kind, err)
		}
		r.poison.kinds = append(r.poison.kinds, p.kind)
	}
	want := r.poison.dlqFirst + len(msgs)
	deadline := time.Now().Add(partnerload.MaxRecovery)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if q, err = r.queue(ctx, amqpx.DeadQueue); err == nil && q.Messages >= want {
			fr.note = fmt.Sprintf("%d published, all dead-lettered", len(msgs))
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("%d poison messages published, the dead-letter queue holds %d of them after %s",
		len(msgs), q.Messages-r.poison.dlqFirst, partnerload.MaxRecovery)
}

// judgePoison checks that the dead-letter queue holds the poison messages
// and nothing else, and that none of them left a row.
func (r *run) judgePoison(ctx context.Context) []error {
	if r.poison == nil {
		return nil
	}
	var errs []error
	q, err := r.queue(ctx, amqpx.DeadQueue)
	if err != nil {
		return []error{err}
	}
	if want := r.poison.dlqFirst + len(r.poison.kinds); q.Messages != want {
		errs = append(errs, fmt.Errorf("the dead-letter queue holds %d messages, want the %d poison messages only", q.Messages, want))
	}
	var tenants, ledger int
	err = r.st.DB.QueryRow(ctx, `SELECT (SELECT count(*) FROM tenants WHERE remote_id LIKE $1),
		(SELECT count(*) FROM command_ledger WHERE request_id LIKE $2)`,
		"p"+r.cfg.Tag+"x%", "poison-"+r.cfg.Tag+"-%").Scan(&tenants, &ledger)
	switch {
	case err != nil:
		errs = append(errs, err)
	case tenants != 0 || ledger != 0:
		errs = append(errs, fmt.Errorf("poison messages made %d customers and %d ledger rows, want none", tenants, ledger))
	}
	r.checked += 3
	return errs
}
