package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// broker is a test's own connection to the stack's vhost, to put commands on
// the queue as a gateway does and read their replies.
type broker struct {
	t       *testing.T
	ch      *amqp.Channel
	replies <-chan amqp.Delivery
	replyTo string
}

func newBroker(t *testing.T, s *Stack) *broker {
	t.Helper()
	conn, err := amqp.Dial(s.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	replies, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &broker{t: t, ch: ch, replies: replies, replyTo: q.Name}
}

// command builds the message a gateway sends for a call of partner.
func command(t *testing.T, partner int64, commandID, method, params string) *protocol.Command {
	t.Helper()
	p, perr := protocol.DecodeParams(method, []byte(params))
	if perr != nil {
		t.Fatal(perr)
	}
	return &protocol.Command{CommandID: commandID, Method: method, Partner: partner, RequestID: "rid-" + commandID,
		Params: protocol.Canonical(p), Timestamp: time.Now()}
}

// run publishes cmd and returns the worker's reply.
func (b *broker) run(cmd *protocol.Command) protocol.Result {
	b.t.Helper()
	corr := idempotency.NewToken()
	if err := b.ch.Publish(amqpx.Exchange, amqpx.RoutingKey, true, false, cmd.Publishing(corr, b.replyTo)); err != nil {
		b.t.Fatal(err)
	}
	deadline := time.After(settleWithin)
	for {
		select {
		case d := <-b.replies:
			if d.CorrelationId != corr {
				continue
			}
			res, err := protocol.DecodeReply(&d)
			if err != nil {
				b.t.Fatal(err)
			}
			return res
		case <-deadline:
			b.t.Fatalf("no reply to %s %s", cmd.Method, cmd.CommandID)
		}
	}
}

func (s *Stack) partnerID(name string) int64 {
	s.t.Helper()
	var id int64
	if err := s.DB().QueryRow(context.Background(), `SELECT id FROM partners WHERE name = $1`, name).Scan(&id); err != nil {
		s.t.Fatal(err)
	}
	return id
}

// Finding 3: a suspendOrder redelivered after a later resumeOrder gets the
// answer it was given and leaves the order as the partner's last answered
// call left it: active.
func TestLedgerRedeliveredSuspendChangesNothing(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	b := newBroker(t, s)
	s.Want(200, "createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}})
	s.Want(200, "createFirstOrder", m{"customer": "C1", "id": "O1", "product": "oo-std", "licenses": 5, "duration": "monthly"})
	suspend := command(t, s.partnerID("Partner A"), "cmd-suspend-1", protocol.SuspendOrder, `{"id":"O1"}`)
	first := b.run(suspend)
	if first.Status != 200 || !bytes.Contains(first.Body, []byte(`"status":"suspended"`)) {
		t.Fatalf("suspend: %d %s", first.Status, first.Body)
	}
	if o := s.Want(200, "resumeOrder", m{"id": "O1"}); o["status"] != "active" {
		t.Fatalf("resume: %v", o)
	}
	again := b.run(suspend) // the same message, as the broker redelivers it
	if again.Status != first.Status || !bytes.Equal(again.Body, first.Body) || again.Replayed {
		t.Fatalf("redelivered suspend: %d %s (replayed %v), want the recorded %d %s", again.Status, again.Body,
			again.Replayed, first.Status, first.Body)
	}
	if o := s.Want(200, "getOrder", m{"id": "O1"}); o["status"] != "active" {
		t.Fatalf("after the redelivered suspend the order is %v, want active", o["status"])
	}
	if n := s.Count(`SELECT count(*) FROM command_ledger WHERE command_id = 'cmd-suspend-1'`); n != 1 {
		t.Fatalf("%d ledger rows for the suspend, want 1", n)
	}
}

// Finding 3: a redelivered resetUser issues no new token: the one the partner
// received stays valid, and the recorded answer does not hold it.
func TestLedgerRedeliveredResetKeepsTheToken(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	b := newBroker(t, s)
	s.Want(200, "createUser", m{"email": "ann@example.com"})
	reset := command(t, s.partnerID("Partner A"), "cmd-reset-1", protocol.ResetUser, `{"email":"ann@example.com"}`)
	first := b.run(reset)
	var token string
	if first.Status == 200 {
		token, _ = Response{Body: first.Body}.JSON(t)["resetToken"].(string)
	}
	if token == "" {
		t.Fatalf("reset: %d %s", first.Status, first.Body)
	}
	again := b.run(reset)
	if again.Status != 200 || bytes.Contains(again.Body, []byte(token)) {
		t.Fatalf("redelivered reset: %d %s", again.Status, again.Body)
	}
	var hash []byte
	if err := s.DB().QueryRow(context.Background(), `SELECT reset_token_hash FROM users WHERE email = 'ann@example.com'`).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256([]byte(token)); !bytes.Equal(hash, want[:]) {
		t.Fatal("the redelivered resetUser replaced the token the partner received")
	}
	if n := s.Count(`SELECT count(*) FROM command_ledger WHERE position(convert_to($1, 'UTF8') IN response_body) > 0`, token); n != 0 {
		t.Fatal("the ledger holds the reset token in clear")
	}
}

// Finding 2: a derived key ends with the resource it created. createUser,
// deleteUser, then the same createUser creates the user again; after another
// delete, a createUser with another displayName creates it too.
func TestLedgerCreateUserAfterDeleteCreatesAgain(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	user := m{"email": "ann@example.com", "displayName": "Ann"}
	s.Want(200, "createUser", user)
	s.Want(200, "deleteUser", m{"email": "ann@example.com"})
	r := s.Call("createUser", user)
	if r.Status != 200 || r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("createUser after deleteUser: %d %s (replayed %q), want a new user", r.Status, r.Body, r.Header.Get("Idempotent-Replayed"))
	}
	if n := s.Count(`SELECT count(*) FROM users WHERE email = 'ann@example.com'`); n != 1 {
		t.Fatalf("%d users after the create again, want 1", n)
	}
	s.Want(200, "deleteUser", m{"email": "ann@example.com"})
	if u := s.Want(200, "createUser", m{"email": "ann@example.com", "displayName": "Ann B"}); u["displayName"] != "Ann B" {
		t.Fatalf("createUser with another displayName after a delete: %v", u)
	}
	if n := s.Count(`SELECT count(*) FROM users WHERE email = 'ann@example.com' AND display_name = 'Ann B'`); n != 1 {
		t.Fatalf("%d users Ann B, want 1", n)
	}
	// The key still holds for the user that exists.
	if r := s.Call("createUser", m{"email": "ann@example.com", "displayName": "Ann C"}); r.Status != 409 || r.ErrorCode(t) != "already_exists" {
		t.Fatalf("createUser with other params while the user exists: %d %s", r.Status, r.Body)
	}
}

// With the Redis records lost, a call repeated under its key is answered from
// the ledger byte for byte, with Idempotent-Replayed: true; other params
// under the key get the refusal Redis would have given.
func TestLedgerReplaysWhenRedisLostTheRecord(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	rdb := redisClient(t, s.RedisURL)
	cust := m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}
	first := s.Call("createCustomer", cust)
	s.Want(200, "createFirstOrder", m{"customer": "C1", "id": "O1", "product": "oo-std", "licenses": 5, "duration": "monthly"})
	suspend := s.Call("suspendOrder", m{"id": "O1"}, "Idempotency-Key", "k-suspend")
	s.Want(200, "resumeOrder", m{"id": "O1"})
	if first.Status != 200 || suspend.Status != 200 {
		t.Fatalf("create %d %s, suspend %d %s", first.Status, first.Body, suspend.Status, suspend.Body)
	}
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	again := s.Call("createCustomer", cust)
	if again.Status != 200 || !bytes.Equal(again.Body, first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("createCustomer again after the flush: %d %s (replayed %q), want %s replayed", again.Status, again.Body,
			again.Header.Get("Idempotent-Replayed"), first.Body)
	}
	s2 := s.Call("suspendOrder", m{"id": "O1"}, "Idempotency-Key", "k-suspend")
	if s2.Status != 200 || !bytes.Equal(s2.Body, suspend.Body) || s2.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("keyed suspend again after the flush: %d %s, want %s replayed", s2.Status, s2.Body, suspend.Body)
	}
	if o := s.Want(200, "getOrder", m{"id": "O1"}); o["status"] != "active" {
		t.Fatalf("the replayed suspend ran again: %v", o["status"])
	}
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if r := s.Call("createCustomer", m{"id": "C1", "name": "Other", "admin": m{"email": "a@example.com"}}); r.Status != 409 || r.ErrorCode(t) != "already_exists" {
		t.Fatalf("createCustomer with other params after the flush: %d %s", r.Status, r.Body)
	}
	if r := s.Call("resumeOrder", m{"id": "O1"}, "Idempotency-Key", "k-suspend"); r.Status != 422 || r.ErrorCode(t) != "idempotency_key_reused" {
		t.Fatalf("the key with another call after the flush: %d %s", r.Status, r.Body)
	}
	if n := s.Count(`SELECT count(*) FROM tenants WHERE kind = 'customer'`); n != 1 {
		t.Fatalf("%d customers, want 1", n)
	}
}

// A command that fails permanently inside the service is answered 500
// internal with its request id, recorded as failed, and dead-lettered.
func TestLedgerPermanentFailureIsAnswered(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	s.Want(200, "createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}})
	s.Want(200, "createFirstOrder", m{"customer": "C1", "id": "O1", "product": "oo-std", "licenses": 5, "duration": "monthly"})
	// The fault: the database refuses every change of an order, as no
	// validation foresees.
	if _, err := s.DB().Exec(context.Background(), `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
		$$BEGIN RAISE EXCEPTION 'injected fault'; END$$;
		CREATE TRIGGER refuse BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION refuse()`); err != nil {
		t.Fatal(err)
	}
	r := s.Call("suspendOrder", m{"id": "O1"}, "X-Request-Id", "req-fails")
	if r.Status != 500 || r.ErrorCode(t) != "internal" || r.JSON(t)["requestId"] != "req-fails" {
		t.Fatalf("suspend refused by the database: %d %s, want 500 internal with the request id", r.Status, r.Body)
	}
	g := s.Want(200, "getRequest", m{"id": "req-fails"})
	if g["status"] != "failed" || g["response"].(m)["status"] != float64(500) {
		t.Fatalf("getRequest of the failed call: %v", g)
	}
	// The reply goes out before the message is dead-lettered.
	for deadline := time.Now().Add(settleWithin); deadLetters(t, s) != 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d dead-lettered, want the failed command", deadLetters(t, s))
		}
	}
	if o := s.Want(200, "getOrder", m{"id": "O1"}); o["status"] != "active" {
		t.Fatalf("order %v after the failed suspend", o["status"])
	}
}
