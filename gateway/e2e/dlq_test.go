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
	list := s.admin("dlq", "list")
	if !strings.Contains(list, "method=createCustomer") || !strings.Contains(list, "request_id=dead-1") {
		t.Fatalf("dlq list: %q", list)
	}
	// Listed messages go back to the DLQ when the listing's channel closes.
	for deadline := time.Now().Add(within); depth() != 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("listing removed the message")
		}
	}
	// The operator fixes the cause, then replays.
	if _, err := s.DB().Exec(t.Context(), `INSERT INTO partners (id, name) VALUES (999, 'Late partner')`); err != nil {
		t.Fatal(err)
	}
	if out := s.admin("dlq", "replay"); out != "replayed 1" {
		t.Fatalf("dlq replay: %q", out)
	}
	for deadline := time.Now().Add(within); s.Count(`SELECT count(*) FROM tenants WHERE remote_id = 'LATE'`) != 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the replayed command was not provisioned")
		}
	}
	for deadline := time.Now().Add(within); depth() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the DLQ still holds the replayed message")
		}
	}
}
