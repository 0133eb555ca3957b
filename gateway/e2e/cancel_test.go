package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oneoffice/provisioner/shared/amqpx"
)

// refuseNew stops the proxy's listener and leaves its connections open: a
// process keeps what it has and cannot connect again until Restore.
func (p *Proxy) refuseNew() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
}

// readyz is the status of a process's /readyz, 0 if it does not answer.
func readyz(p *Proc) int {
	resp, err := http.Get("http://" + p.Metrics + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A worker whose consumer the broker cancels (its queue deleted) notices it:
// it is not ready until it has declared the queue again and consumes, and
// then calls succeed again.
func TestCancelledConsumer(t *testing.T) {
	s := NewStack(t)
	proxy := NewProxy(t, "127.0.0.1:5672")
	s.StartGateway()
	// The worker reaches the broker through the proxy, so that the test can
	// hold it between losing its consumer and consuming again.
	vhost := s.AMQPURL[strings.LastIndex(s.AMQPURL, "/"):]
	w := s.StartWorker("AMQP_URL=amqp://guest:guest@" + proxy.Addr + vhost)
	s.Want(200, "createCustomer", customer("C1"))

	proxy.refuseNew()
	ch := brokerChannel(t, s)
	if _, err := ch.QueueDelete(amqpx.Queue, false, false, false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "worker /readyz 503 after its consumer was cancelled", func() bool {
		return readyz(w) == http.StatusServiceUnavailable
	})
	// Without the queue the command is returned unroutable: not enqueued.
	if r := s.CallOnce("createCustomer", customer("C2")); r.Status != 503 || r.ErrorCode(t) != "unavailable" {
		t.Fatalf("no command queue: %d %s, want 503 unavailable", r.Status, r.Body)
	}

	proxy.Restore()
	if err := w.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclarePassive(amqpx.Queue, true, false, false, false, nil); err != nil {
		t.Fatalf("the worker did not declare the queue again: %v", err)
	}
	s.Want(200, "createCustomer", customer("C2"))
	s.Want(200, "createCustomer", customer("C3"))
	if n := s.Count(`SELECT count(*) FROM tenants`); n != 3 {
		t.Fatalf("%d tenants, want 3", n)
	}
}
