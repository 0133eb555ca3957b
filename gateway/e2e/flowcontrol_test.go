package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// privateStack is a stack whose broker is a RabbitMQ node of the test's own,
// so that the test may raise a resource alarm on it.
func privateStack(t *testing.T, extra ...string) (*Stack, *testenv.RabbitNode) {
	t.Helper()
	node := testenv.PrivateRabbit(t)
	url, err := node.Vhost(context.Background(), "oneoffice")
	if err != nil {
		t.Fatal(err)
	}
	s := NewStack(t, append([]string{"AMQP_URL=" + url}, extra...)...)
	s.AMQPURL = url
	return s, node
}

// alarm raises (on) or clears the node's memory alarm.
func alarm(t *testing.T, node *testenv.RabbitNode, on bool) {
	t.Helper()
	args := []string{"set_vm_memory_high_watermark", "0.4"}
	if on {
		args = []string{"set_vm_memory_high_watermark", "absolute", "10MB"}
	}
	if err := node.Ctl(context.Background(), args...); err != nil {
		t.Fatal(err)
	}
}

func customer(id string) map[string]any {
	return m{"id": id, "name": id + " Company", "admin": m{"email": id + "@example.com"}}
}

// SPEC section 4: while the broker blocks publishers the gateway answers 503
// at once and publishes nothing; a command written but not confirmed by the
// deadline has an unknown outcome, 202 with its key kept, and completes once.
func TestMemoryAlarm(t *testing.T) {
	// One worker goroutine and prefetch 1: commands complete in queue order,
	// so a call that completes shows that every command before it did.
	s, node := privateStack(t, "RPC_TIMEOUT=1s", "WORKER_CONCURRENCY=1", "WORKER_PREFETCH=1")
	gw := s.StartGateway()
	s.StartWorker()
	s.Want(200, "createCustomer", customer("C0"))

	alarm(t, node, true)
	t.Cleanup(func() { node.Ctl(context.Background(), "set_vm_memory_high_watermark", "0.4") })
	// RabbitMQ blocks a connection at its first publish during an alarm:
	// that publish is written and not confirmed, its outcome unknown.
	if r := s.CallOnce("createCustomer", customer("P1")); r.Status != 202 {
		t.Fatalf("first call in the alarm: %d %s, want 202 pending", r.Status, r.Body)
	}
	if r := s.CallOnce("createCustomer", customer("P1")); r.Status != 409 || r.ErrorCode(t) != "request_in_progress" {
		t.Fatalf("P1 repeated: %d %s, want 409 request_in_progress (its key kept)", r.Status, r.Body)
	}
	waitMetric(t, gw, "oneoffice_gateway_broker_blocked", 1)
	ids := []string{"A1", "A2", "A3"}
	for _, id := range ids {
		r := s.CallOnce("createCustomer", customer(id))
		if r.Status != 503 || r.ErrorCode(t) != "unavailable" {
			t.Fatalf("%s while blocked: %d %s, want 503 unavailable", id, r.Status, r.Body)
		}
	}
	if v := value(scrape(t, gw), "oneoffice_gateway_publish_unconfirmed_total", nil); v != 1 {
		t.Fatalf("%v publishes of unknown outcome, want 1 (P1)", v)
	}

	alarm(t, node, false)
	waitMetric(t, gw, "oneoffice_gateway_broker_blocked", 0)
	// P1's publish is confirmed now and its worker runs it: repeated, the
	// call is 409 request_in_progress until its result is stored, then 200.
	s.Eventually(200, 60*time.Second, "createCustomer", customer("P1"))
	s.Want(200, "createCustomer", customer("Z1"))
	if n := s.Count(`SELECT count(*) FROM tenants WHERE remote_id = ANY($1)`, ids); n != 0 {
		t.Fatalf("%d of the customers answered 503 were provisioned: the gateway published them", n)
	}
	for _, id := range ids {
		s.Want(200, "createCustomer", customer(id))
	}
	if n := s.Count(`SELECT count(*) FROM tenants WHERE remote_id = 'P1'`); n != 1 {
		t.Fatalf("P1 provisioned %d times, want once", n)
	}
	if n := s.Count(`SELECT count(*) FROM tenants`); n != 6 {
		t.Fatalf("%d tenants, want 6 (C0, P1, Z1, A1-A3)", n)
	}
}

// waitUntil polls cond every 50 ms until it holds, failing after within.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
	}
}
