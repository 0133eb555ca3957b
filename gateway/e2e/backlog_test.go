package e2e

import (
	"fmt"
	"slices"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// A backlog of order commands, each delivered twice as a crashed worker's
// unacked messages come back (half of them alone, half in batch messages of
// the gateway's kind, each batch twice), and one refused, reaches a worker
// at once, which runs them side by side. Each applies once: every order
// suspended, every new order made once, one ledger row per command, the
// refusal recorded.
func TestABacklogDeliveredTwiceAppliesOnce(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	w := s.StartWorker()
	s.Want(200, "createCustomer", primer)
	const n = 20
	for i := range n {
		s.Want(200, "createFirstOrder", m{"customer": "ABC", "id": fmt.Sprintf("O%d", i), "product": "oo-lite",
			"licenses": 1, "duration": "monthly"})
	}
	w.Stop()

	var partner int64
	s.DB().QueryRow(t.Context(), `SELECT id FROM partners WHERE name = 'Partner A'`).Scan(&partner)
	conn, err := amqp.Dial(s.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	var cmds []protocol.Command
	for i := range n {
		cmds = append(cmds,
			protocol.Command{CommandID: fmt.Sprintf("suspend-%d", i), Method: "suspendOrder", Partner: partner,
				RequestID: fmt.Sprintf("rs-%d", i), Params: []byte(fmt.Sprintf(`{"id":"O%d"}`, i))},
			protocol.Command{CommandID: fmt.Sprintf("order-%d", i), Method: "createFirstOrder", Partner: partner,
				RequestID: fmt.Sprintf("ro-%d", i), Params: []byte(fmt.Sprintf(
					`{"customer":"ABC","id":"N%d","product":"oo-lite","licenses":2,"duration":"monthly"}`, i))})
	}
	cmds = append(cmds, protocol.Command{CommandID: "refused", Method: "createFirstOrder", Partner: partner,
		RequestID: "r-refused", Params: []byte(`{"customer":"NOPE","id":"X1","product":"oo-lite","licenses":2,"duration":"monthly"}`)})
	publish := func(p amqp.Publishing) {
		if err := ch.Publish(amqpx.Exchange, amqpx.RoutingKey, true, false, p); err != nil {
			t.Fatal(err)
		}
	}
	alone, batched := cmds[:n], cmds[n:]
	for _, c := range alone {
		publish(c.Publishing("", ""))
		publish(c.Publishing("", ""))
	}
	for b := range slices.Chunk(batched, 7) { // 21: three batches
		pubs := make([]amqp.Publishing, len(b))
		for i, c := range b {
			pubs[i] = c.Publishing("", "")
		}
		batch, err := protocol.EncodeBatch(pubs)
		if err != nil {
			t.Fatal(err)
		}
		publish(batch)
		publish(batch)
	}
	w2 := s.StartWorker()
	waitHandled(t, float64(2*len(cmds)), w2)

	if got := s.Count(`SELECT count(*) FROM orders WHERE status = 'suspended'`); got != n {
		t.Fatalf("%d orders suspended, want %d", got, n)
	}
	if got := s.Count(`SELECT count(*) FROM orders WHERE remote_id LIKE 'N%'`); got != n {
		t.Fatalf("%d new orders, want %d", got, n)
	}
	if got := s.Count(`SELECT count(*) FROM orders WHERE remote_id = 'X1'`); got != 0 {
		t.Fatal("the refused order was made")
	}
	for _, c := range cmds {
		if got := s.Count(`SELECT count(*) FROM command_ledger WHERE command_id = $1`, c.CommandID); got != 1 {
			t.Fatalf("command %s: %d ledger rows, want 1", c.CommandID, got)
		}
	}
	if got := s.Count(`SELECT response_status FROM command_ledger WHERE command_id = 'refused'`); got != 404 {
		t.Fatalf("the refusal recorded as %d, want 404", got)
	}
}
