package e2e

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/oneoffice/provisioner/shared/amqpx"
)

// SPEC section 5: past the calls in flight the gateway serves
// (ADMISSION_MAX_IN_FLIGHT), a call is refused at once, 503 overloaded with
// Retry-After, before anything is enqueued or its key taken: the queue holds
// only the admitted commands, and the refused call retried with the same key
// later runs (not 409 request_in_progress). With no worker yet, the admitted
// calls wait in the queue; the refusal does not wait for them.
func TestOverloadRefusesBeforeTheQueue(t *testing.T) {
	t.Parallel()
	s := NewStack(t, "ADMISSION_MAX_IN_FLIGHT=2", "ADMISSION_MIN_IN_FLIGHT=2", "RPC_TIMEOUT=20s")
	gw := s.StartGateway()
	keyB := s.NewKey("Partner B")
	ch := brokerChannel(t, s)
	ready := func() int {
		q, err := ch.QueueDeclarePassive(amqpx.Queue, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return q.Messages
	}
	var wg sync.WaitGroup
	held := make([]Response, 2)
	for i, key := range []string{s.Key, keyB} {
		wg.Go(func() {
			held[i] = s.DoOnce(key, envelope("createCustomer", customer("HELD"+string(rune('A'+i)))))
		})
		waitUntil(t, 30*time.Second, "the admitted command in the queue", func() bool { return ready() == i+1 })
	}
	over := s.CallOnce("createCustomer", customer("OVER"), "Idempotency-Key", "k-over")
	if over.Status != http.StatusServiceUnavailable || over.ErrorCode(t) != "overloaded" || over.Header.Get("Retry-After") != "1" {
		t.Fatalf("over the limit: %d %s, Retry-After %q; want 503 overloaded, 1", over.Status, over.Body,
			over.Header.Get("Retry-After"))
	}
	if n := ready(); n != 2 {
		t.Fatalf("%d commands in the queue, want the 2 admitted", n)
	}
	if got := value(scrape(t, gw), "oneoffice_gateway_overload_refusals_total", map[string]string{"reason": "limit"}); got != 1 {
		t.Fatalf("oneoffice_gateway_overload_refusals_total{reason=limit} = %v, want 1", got)
	}
	s.StartWorker()
	wg.Wait()
	for i, r := range held {
		if r.Status != http.StatusOK {
			t.Fatalf("admitted call %d: %d %s", i, r.Status, r.Body)
		}
	}
	// Nothing was held for the refused call: the retry runs.
	s.Want(http.StatusOK, "createCustomer", customer("OVER"), "Idempotency-Key", "k-over")
	if n := s.Count(`SELECT count(*) FROM tenants`); n != 3 {
		t.Fatalf("%d tenants, want 3", n)
	}
}
