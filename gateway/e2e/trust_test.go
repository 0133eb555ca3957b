package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// A customer's id counts the calling partner's customers only: how many
// customers another partner has, before or in between, shows nowhere.
func TestTrustCustomerIDsArePerPartner(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	keyB := s.NewKey("Partner B")
	for i, id := range []string{"A1", "A2", "A3"} {
		if c := s.Want(200, "createCustomer", m{"id": id, "name": id, "admin": m{"email": "a@example.com"}}); c["id"] != float64(i+1) {
			t.Fatalf("partner A's customer %s: %v, want id %d", id, c, i+1)
		}
	}
	b := s.Do(keyB, envelope("createCustomer", m{"id": "A1", "name": "B's", "admin": m{"email": "b@example.com"}}))
	if b.Status != 200 || b.JSON(t)["id"] != float64(1) {
		t.Fatalf("partner B's first customer after A's three: %d %s, want id 1", b.Status, b.Body)
	}
	if c := s.Want(200, "createCustomer", m{"id": "A4", "name": "A4", "admin": m{"email": "a@example.com"}}); c["id"] != float64(4) {
		t.Fatalf("partner A's fourth customer after B's first: %v, want id 4", c)
	}
	if g := s.Do(keyB, envelope("getCustomer", m{"id": "A1"})); g.Status != 200 || g.JSON(t)["id"] != float64(1) {
		t.Fatalf("partner B's getCustomer: %d %s", g.Status, g.Body)
	}
}

// A command put on the queue by something other than a gateway, carrying
// another partner's idempotency key, is refused by the worker binary: nothing
// is provisioned, it waits in the DLQ, the worker counts it, and no record is
// written under the other partner's key (completing a missing record would
// create it, so that partner's next call would replay the forger's answer).
func TestTrustForgedCommandIsNotRun(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	w := s.StartWorker()
	s.NewKey("Partner B")
	var a, b int64
	s.DB().QueryRow(t.Context(), `SELECT id FROM partners WHERE name = 'Partner A'`).Scan(&a)
	s.DB().QueryRow(t.Context(), `SELECT id FROM partners WHERE name = 'Partner B'`).Scan(&b)
	params := []byte(`{"id":"X1","name":"Forged","admin":{"email":"a@example.com"}}`)
	forged := protocol.Command{Method: protocol.CreateCustomer, Partner: a, RequestID: "forged-1", Params: params,
		IdemKey: idempotency.Key(b, "customer:X1", true), IdemToken: idempotency.NewToken(),
		IdemFP: idempotency.Fingerprint(protocol.CreateCustomer, params)}
	ch := brokerChannel(t, s)
	if err := ch.Publish(amqpx.Exchange, amqpx.RoutingKey, true, false, forged.Publishing("", "")); err != nil {
		t.Fatal(err)
	}
	invalid := map[string]string{"reason": "invalid"}
	for deadline := time.Now().Add(settleWithin); value(scrape(t, w), "oneoffice_worker_dead_lettered_total", invalid) != 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the forged command was not dead-lettered as invalid:\n%s", w.Log())
		}
	}
	// The broker routes the nacked message to the dead-letter queue after the
	// worker counted it, and confirms nothing of it: wait for the copy.
	for deadline := time.Now().Add(settleWithin); deadLetters(t, s) != 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("DLQ holds %d messages, want the forged command", deadLetters(t, s))
		}
	}
	if n := s.Count(`SELECT count(*) FROM tenants`); n != 0 {
		t.Fatalf("the forged command provisioned %d tenants", n)
	}
	if n, err := redisClient(t, s.RedisURL).Exists(context.Background(), forged.IdemKey).Result(); err != nil || n != 0 {
		t.Fatalf("a record was written under partner B's key: %d %v", n, err)
	}
}
