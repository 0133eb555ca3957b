package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
)

// gzipBomb is a body of n zero bytes, gzip-compressed: 300 MB make about
// 300 KB on the wire.
func gzipBomb(t *testing.T, n int) string {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	chunk := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(chunk))
		if _, err := w.Write(chunk[:k]); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
	w.Close()
	return buf.String()
}

// residentKiB reads a process's resident set size, now (VmRSS) or at its
// peak (VmHWM), from /proc.
func residentKiB(t *testing.T, p *Proc, field string) int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, p.cmd.Process.Pid)
	return 0
}

// TestDecompressionBombsLeaveTheGatewayStanding sends 100 concurrent bodies
// of 300 KB that inflate to 300 MB each: every one is a 413, nothing reaches
// a worker, and the gateway's resident memory stays within twice its idle size.
func TestDecompressionBombsLeaveTheGatewayStanding(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	gw := s.StartGateway()
	w := s.StartWorker()
	// Commands the worker refuses (reads would not reach it).
	for i := range 20 {
		s.Want(http.StatusNotFound, "suspendOrder", m{"id": fmt.Sprintf("warm-%d", i)})
	}
	time.Sleep(time.Second) // let the warm-up's garbage be collected like idle time would
	idle := residentKiB(t, gw, "VmRSS")
	// 300 MiB make about 300 KB on the wire, over the limit as sent; 50 MiB
	// make about 50 KB, under it, and are refused while they inflate.
	for _, size := range []int{300 << 20, 50 << 20} {
		bomb := gzipBomb(t, size)
		t.Logf("bomb: %d bytes on the wire, %d MiB inflated; gateway idle at %d KiB", len(bomb), size>>20, idle)
		sendConcurrently(t, s, 100, bomb, "Content-Encoding", "gzip")
	}
	after, peak := residentKiB(t, gw, "VmRSS"), residentKiB(t, gw, "VmHWM")
	t.Logf("gateway resident after 200 bombs: %d KiB (peak %d KiB), idle %d KiB", after, peak, idle)
	if after > 2*idle {
		t.Errorf("gateway resident %d KiB after the bombs, more than twice its idle %d KiB", after, idle)
	}
	s.Want(http.StatusNotFound, "suspendOrder", m{"id": "after"})
	if n := s.Count("SELECT count(*) FROM tenants WHERE kind = 'customer'"); n != 0 {
		t.Errorf("%d customers provisioned", n)
	}
	if n := commandsHandled(t, w); n != 21 {
		t.Errorf("worker handled %v commands, want the 21 refused suspendOrder", n)
	}
}

// sendConcurrently sends body n times at once and wants 413 body_too_large
// for every one.
func sendConcurrently(t *testing.T, s *Stack, n int, body string, headers ...string) {
	t.Helper()
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	statuses := make([]int, n)
	codes := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.send(client, http.MethodPost, s.Key, body, headers...)
			if err != nil {
				t.Error(err)
				return
			}
			statuses[i], codes[i] = r.Status, r.ErrorCode(t)
		}()
	}
	wg.Wait()
	for i := range n {
		if statuses[i] != http.StatusRequestEntityTooLarge || codes[i] != "body_too_large" {
			t.Fatalf("bomb %d: %d %s, want 413 body_too_large", i, statuses[i], codes[i])
		}
	}
}

// commandsHandled is the worker's count of handled commands, all outcomes.
func commandsHandled(t *testing.T, p *Proc) float64 {
	t.Helper()
	var n float64
	if f := scrape(t, p)["oneoffice_worker_commands_total"]; f != nil {
		for _, mt := range f.Metric {
			n += mt.GetCounter().GetValue()
		}
	}
	return n
}

// brokerChannel is a channel on the stack's vhost, closed at cleanup.
func brokerChannel(t *testing.T, s *Stack) *amqp.Channel {
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
	return ch
}

// deadLetters is the number of messages in the stack's dead-letter queue.
func deadLetters(t *testing.T, s *Stack) int {
	t.Helper()
	q, err := brokerChannel(t, s).QueueDeclarePassive(amqpx.DeadQueue, true, false, false, false,
		amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

// TestHostileCallsAreRefusedAndProvisionNothing sends, as a buggy or hostile
// integration would, bodies the contract refuses: each gets its 4xx naming
// the field and the rule at once (never a 202), and no command reaches a
// worker or the dead-letter queue.
func TestHostileCallsAreRefusedAndProvisionNothing(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	w := s.StartWorker()
	customer := func(name string) string {
		return `{"method":"createCustomer","params":{"id":"H1","name":"` + name + `","admin":{"email":"a@example.com"}}}`
	}
	cases := []struct {
		name, body      string
		headers         []string
		status          int
		code, field, in string
	}{
		{"NUL in a name", customer(`A\u0000B`), nil, 400, "invalid_params", "params.name", "U+0000"},
		{"bidi override", customer(`Acme\u202eevil`), nil, 400, "invalid_params", "params.name", "U+202E"},
		{"zero-width space", customer(`Ac\u200bme`), nil, 400, "invalid_params", "params.name", "U+200B"},
		{"C1 control", customer(`Ac\u0085me`), nil, 400, "invalid_params", "params.name", "U+0085"},
		{"unpaired surrogate", customer(`Ac\udc00me`), nil, 400, "invalid_json", "params.name", ""},
		{"invalid UTF-8", customer("Ac\xffme"), nil, 400, "invalid_json", "params.name", "UTF-8"},
		{"duplicate method", `{"method":"getCustomer","method":"createCustomer","params":{"id":"H1"}}`, nil, 400, "invalid_json", "method", "twice"},
		{"duplicate param", `{"method":"createCustomer","params":{"id":"H1","id":"H2","name":"n","admin":{"email":"a@example.com"}}}`, nil, 400, "invalid_json", "params.id", "twice"},
		{"param name case", `{"method":"createCustomer","params":{"Id":"H1","name":"n","admin":{"email":"a@example.com"}}}`, nil, 400, "invalid_params", "params.Id", "case-sensitive"},
		{"unknown param", `{"method":"createCustomer","params":{"id":"H1","name":"n","admin":{"email":"a@example.com"},"plan":"x"}}`, nil, 400, "invalid_params", "params.plan", "not a param"},
		{"float licenses", `{"method":"createFirstOrder","params":{"customer":"H1","id":"O1","product":"oo-lite","licenses":20.0,"duration":"monthly"}}`, nil, 400, "invalid_params", "params.licenses", "integer"},
		{"string licenses", `{"method":"createFirstOrder","params":{"customer":"H1","id":"O1","product":"oo-lite","licenses":"20","duration":"monthly"}}`, nil, 400, "invalid_params", "params.licenses", "integer"},
		{"too deep", `{"method":"getCustomer","params":{"id":"H1"},"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, nil, 400, "invalid_json", "", "deeper"},
		{"brotli", customer("n"), []string{"Content-Encoding", "br"}, 415, "unsupported_encoding", "Content-Encoding", "br"},
		{"HEAD", "", nil, 405, "", "", ""},
	}
	for _, c := range cases {
		verb := http.MethodGet
		if c.name == "HEAD" {
			verb = http.MethodHead
		}
		r := s.do(s.client, verb, s.Key, c.body, c.headers...)
		if r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", c.name, r.Header.Get("Cache-Control"))
		}
		if c.name == "HEAD" {
			if r.Status != c.status {
				t.Errorf("HEAD: %d, want 405", r.Status)
			}
			continue
		}
		e, _ := r.JSON(t)["error"].(map[string]any)
		field, _ := e["field"].(string)
		msg, _ := e["message"].(string)
		if r.Status != c.status || e["code"] != c.code || field != c.field || !strings.Contains(msg, c.in) {
			t.Errorf("%s: %d %s, want %d %s %s %q", c.name, r.Status, r.Body, c.status, c.code, c.field, c.in)
		}
	}
	if n := s.Count("SELECT count(*) FROM tenants WHERE kind = 'customer'"); n != 0 {
		t.Errorf("%d customers provisioned", n)
	}
	if n := commandsHandled(t, w); n != 0 {
		t.Errorf("the worker handled %v commands, want none", n)
	}
	if n := deadLetters(t, s); n != 0 {
		t.Errorf("%d commands dead-lettered", n)
	}
}

// TestKeysMatchExactly: a top-level "METHOD" is one of the ignored fields, so
// a getOrder carrying "METHOD":"cancelOrder" reads the order and cancels
// nothing (encoding/json would have matched it and kept the last).
func TestKeysMatchExactly(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	s.Want(200, "createCustomer", m{"id": "C1", "name": "C One", "admin": m{"email": "a@example.com"}})
	s.Want(200, "createFirstOrder", m{"customer": "C1", "id": "O1", "product": "oo-lite", "licenses": 5, "duration": "monthly"})
	r := s.Do(s.Key, `{"method":"getOrder","params":{"id":"O1"},"METHOD":"cancelOrder","Method":"cancelOrder"}`)
	if r.Status != 200 || r.JSON(t)["status"] != "active" {
		t.Fatalf("getOrder with METHOD: %d %s", r.Status, r.Body)
	}
	var status string
	if err := s.DB().QueryRow(context.Background(), "SELECT status FROM orders WHERE remote_id = 'O1'").Scan(&status); err != nil {
		t.Fatal(err)
	}
	if status != "active" {
		t.Fatalf("order O1 is %s in the database", status)
	}
}

// TestASilentConnectionDoesNotFailShutdown: a client's spare connection that
// never sends a request keeps the HTTP server waiting at shutdown, but no call
// was cut short, so the gateway still exits 0 (Stop fails the test otherwise).
func TestASilentConnectionDoesNotFailShutdown(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	gw := s.StartGateway("SHUTDOWN_TIMEOUT=1s")
	conn, err := net.Dial("tcp", s.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gw.Stop()
}
