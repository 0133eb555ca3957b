package e2e

import (
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/protocol"
)

func TestDeadLettersCanBeListedAndReplayed(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartWorker()
	conn, err := amqp.Dial(s.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	// A command for a partner the database does not know fails permanently.
	cmd := protocol.Command{Method: protocol.CreateCustomer, Partner: 999, RequestID: "dead-1",
		Params: []byte(`{"id":"LATE","name":"Late","admin":{"email":"late@example.com"}}`)}
	if err := ch.Publish(amqpx.Exchange, amqpx.RoutingKey, true, false, cmd.Publishing("", "")); err != nil {
		t.Fatal(err)
	}
	depth := func() int {
		q, err := ch.QueueDeclarePassive(amqpx.DeadQueue, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return q.Messages
	}
	// The bounds are for a loaded machine; a passing run waits far less.
	const within = 60 * time.Second
	for deadline := time.Now().Add(within); depth() != 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the failing command was not dead-lettered")
		}
	}
	// A batch dead-lettered whole, as one past the delivery limit would be.
	var pubs []amqp.Publishing
	for _, id := range []string{"2", "3"} {
		c := cmd
		c.RequestID, c.Params = "dead-"+id, []byte(`{"id":"LATE`+id+`","name":"Late","admin":{"email":"late@example.com"}}`)
		pubs = append(pubs, c.Publishing("", ""))
	}
	batch, err := protocol.EncodeBatch(pubs)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Publish(amqpx.DeadExchange, "", false, false, batch); err != nil {
		t.Fatal(err)
	}
	list := s.admin("dlq", "list")
	for _, id := range []string{"1", "2", "3"} {
		if !strings.Contains(list, "method=createCustomer\tpartner=999\trequest_id=dead-"+id) {
			t.Fatalf("dlq list, a line per command, batched or not: %q", list)
		}
	}
	// Listed messages go back to the DLQ when the listing's channel closes.
	for deadline := time.Now().Add(within); depth() != 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("listing removed the message")
		}
	}
	// The operator fixes the cause, then replays.
	if _, err := s.DB().Exec(t.Context(), `INSERT INTO partners (id, name) VALUES (999, 'Late partner')`); err != nil {
		t.Fatal(err)
	}
	if out := s.admin("dlq", "replay"); out != "replayed 2" {
		t.Fatalf("dlq replay: %q", out)
	}
	for deadline := time.Now().Add(within); s.Count(`SELECT count(*) FROM tenants WHERE remote_id LIKE 'LATE%'`) != 3; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the replayed commands were not provisioned")
		}
	}
	for deadline := time.Now().Add(within); depth() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the DLQ still holds the replayed message")
		}
	}
}
