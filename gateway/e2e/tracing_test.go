package e2e

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP trace receiver: it decodes the protobuf
// requests the processes' exporters send to /v1/traces and keeps their spans.
type otlpReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests int
	spans    []span
}

// span is one exported span and the service.name of the process that sent it.
type span struct {
	*tracepb.Span
	service string
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *otlpReceiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want protobuf on /v1/traces", http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	var export collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &export)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.requests++
	for _, rs := range export.ResourceSpans {
		service := attr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.spans = append(r.spans, span{Span: s, service: service})
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// trace returns the spans of trace id (hex).
func (r *otlpReceiver) trace(id string) []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []span
	for _, s := range r.spans {
		if hex.EncodeToString(s.TraceId) == id {
			out = append(out, s)
		}
	}
	return out
}

// attr is the value of attribute key as text ("" when absent).
func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key != key {
			continue
		}
		switch v := kv.Value.Value.(type) {
		case *commonpb.AnyValue_StringValue:
			return v.StringValue
		case *commonpb.AnyValue_IntValue:
			return fmt.Sprint(v.IntValue)
		case *commonpb.AnyValue_BoolValue:
			return fmt.Sprint(v.BoolValue)
		}
	}
	return ""
}

func (s span) attr(key string) string { return attr(s.Attributes, key) }
func (s span) id() string             { return hex.EncodeToString(s.SpanId) }
func (s span) parent() string         { return hex.EncodeToString(s.ParentSpanId) }
func (s span) hasEvent(name string) bool {
	return slices.ContainsFunc(s.Events, func(e *tracepb.Span_Event) bool { return e.Name == name })
}

// one returns the only span of spans that match, failing otherwise.
func one(t *testing.T, spans []span, what string, match func(span) bool) span {
	t.Helper()
	var found []span
	for _, s := range spans {
		if match(s) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d spans, want 1; the trace: %s", what, len(found), describe(spans))
	}
	return found[0]
}

// under reports whether s descends from the span with id root.
func under(spans []span, s span, root string) bool {
	byID := make(map[string]span, len(spans))
	for _, x := range spans {
		byID[x.id()] = x
	}
	for p := s.parent(); p != ""; p = byID[p].parent() {
		if p == root {
			return true
		}
		if _, ok := byID[p]; !ok {
			return false
		}
	}
	return false
}

// describe lists spans as exported: service, kind, name, id, parent, duration.
func describe(spans []span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %-17s %-9s %-28s %s parent %-16s %8.3f ms", s.service,
			strings.TrimPrefix(s.Kind.String(), "SPAN_KIND_"), s.Name, s.id(), s.parent(),
			float64(s.EndTimeUnixNano-s.StartTimeUnixNano)/1e6)
	}
	return b.String()
}

// The caller's trace reaches the answer: one trace id from the partner's
// traceparent through the gateway, RabbitMQ and the worker to PostgreSQL and
// Redis, each span under the right parent in the right process, with the
// messaging attributes; a 4xx, a 202 and a replayed call are told apart; the
// trace id is in the log lines, the ledger row and the latency exemplars.
func TestOneCallIsOneTraceFromCallerToAnswer(t *testing.T) {
	t.Parallel()
	rcv := newOTLPReceiver(t)
	s := NewStack(t, "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.URL, "OTEL_BSP_SCHEDULE_DELAY=50", "RPC_TIMEOUT=500ms")
	gw := s.StartGateway()
	w := s.StartWorker("WORKER_CONCURRENCY=4")

	const (
		traceOK     = "4bf92f3577b34da6a3ce929d0e0e4736"
		traceReplay = "5bf92f3577b34da6a3ce929d0e0e4737"
		trace4xx    = "6bf92f3577b34da6a3ce929d0e0e4738"
		trace202    = "7bf92f3577b34da6a3ce929d0e0e4739"
		caller      = "00f067aa0ba902b7"
	)
	tp := func(trace string) string { return "00-" + trace + "-" + caller + "-01" }
	ok := s.Call("createCustomer", primer, "traceparent", tp(traceOK), "X-Request-Id", "traced-ok")
	if ok.Status != 200 {
		t.Fatalf("createCustomer: %d %s", ok.Status, ok.Body)
	}
	// Read now, before the calls below: a bucket keeps only its latest
	// exemplar, and theirs may fall in the same one. Each process observes
	// the latency as the call ends, maybe just after its answer, so the
	// exemplars are waited for.
	var exemplar, wexemplar bool
	for try := 0; try < 100 && !(exemplar && wexemplar); try++ {
		if try > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		exemplar = exemplar || hasExemplar(t, gw, "oneoffice_http_request_duration_seconds_bucket", traceOK)
		wexemplar = wexemplar || hasExemplar(t, w, "oneoffice_worker_command_duration_seconds_bucket", traceOK)
	}
	replay := s.Call("createCustomer", primer, "traceparent", tp(traceReplay))
	if replay.Status != 200 || replay.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("createCustomer again: %d %v, want 200 replayed", replay.Status, replay.Header)
	}
	bad := s.Call("createCustomer", m{"id": "BAD", "name": "x", "admin": m{"email": "not-an-email"}}, "traceparent", tp(trace4xx))
	if bad.Status != 400 {
		t.Fatalf("createCustomer with a bad email: %d %s, want 400", bad.Status, bad.Body)
	}
	pending := call202(t, s, tp(trace202))

	// The answer carries the gateway's span; the ledger and the log lines the trace id.
	if got := ok.Header.Get("traceparent"); !strings.HasPrefix(got, "00-"+traceOK+"-") || strings.Contains(got, caller) {
		t.Errorf("answer's traceparent %q: want the trace continued by the gateway's own span", got)
	}
	if n := s.Count(`SELECT count(*) FROM command_ledger WHERE request_id = 'traced-ok' AND trace_id = $1`, traceOK); n != 1 {
		t.Errorf("ledger rows of the call with its trace id: %d, want 1", n)
	}
	// Stopping the processes exports every span they still hold.
	gw.Stop()
	w.Stop()
	if !exemplar || !wexemplar {
		t.Errorf("OpenMetrics exemplar with trace_id %s: gateway %v, worker %v", traceOK, exemplar, wexemplar)
	}
	for _, p := range []*Proc{gw, w} {
		if l := logLines(t, p, "traced-ok"); len(l) != 1 || l[0]["trace_id"] != traceOK {
			t.Errorf("%s log lines of the call: %v, want one with trace_id %s", p.cmd.Path, l, traceOK)
		}
	}

	spans := rcv.trace(traceOK)
	t.Logf("one createCustomer as exported:%s", describe(spans))
	server := one(t, spans, "gateway server span", func(s span) bool { return s.Kind == tracepb.Span_SPAN_KIND_SERVER })
	if server.service != "oneoffice-gateway" || server.parent() != caller || server.Name != "GET /" ||
		server.attr("http.request.method") != "GET" || server.attr("http.response.status_code") != "200" ||
		server.attr("oneoffice.method") != "createCustomer" || server.attr("oneoffice.request_id") != "traced-ok" {
		t.Errorf("server span %s %q parent %s attributes %v", server.service, server.Name, server.parent(), server.Attributes)
	}
	if want := "00-" + traceOK + "-" + server.id() + "-01"; ok.Header.Get("traceparent") != want {
		t.Errorf("answer's traceparent %q, want the server span's %q", ok.Header.Get("traceparent"), want)
	}
	producer := one(t, spans, "publish span", func(s span) bool {
		return s.Kind == tracepb.Span_SPAN_KIND_PRODUCER && s.service == "oneoffice-gateway"
	})
	consumer := one(t, spans, "worker consumer span", func(s span) bool { return s.Kind == tracepb.Span_SPAN_KIND_CONSUMER })
	reply := one(t, spans, "reply span", func(s span) bool {
		return s.Kind == tracepb.Span_SPAN_KIND_PRODUCER && s.service == "oneoffice-worker"
	})
	ack := one(t, spans, "ack span", func(s span) bool { return s.attr("messaging.operation.name") == "ack" })
	if producer.parent() != server.id() || consumer.parent() != producer.id() || consumer.service != "oneoffice-worker" ||
		reply.parent() != consumer.id() || ack.parent() != consumer.id() || ack.service != "oneoffice-worker" {
		t.Errorf("parents: publish under %s (server %s), consume under %s (publish %s), reply and ack under %s, %s (consume %s)",
			producer.parent(), server.id(), consumer.parent(), producer.id(), reply.parent(), ack.parent(), consumer.id())
	}
	for _, c := range []struct {
		s    span
		want map[string]string
	}{
		{producer, map[string]string{"messaging.system": "rabbitmq", "messaging.destination.name": "oneoffice.commands",
			"messaging.rabbitmq.destination.routing_key": "command", "messaging.operation.name": "publish",
			"messaging.operation.type": "send"}},
		{consumer, map[string]string{"messaging.system": "rabbitmq", "messaging.destination.name": "oneoffice.commands",
			"messaging.rabbitmq.destination.routing_key": "command", "messaging.operation.type": "process",
			"messaging.message.id":              producer.attr("messaging.message.id"),
			"messaging.message.conversation_id": producer.attr("messaging.message.conversation_id"),
			"oneoffice.request_id":              "traced-ok", "oneoffice.outcome": "ok"}},
		{reply, map[string]string{"messaging.system": "rabbitmq", "messaging.operation.type": "send",
			"messaging.message.conversation_id": producer.attr("messaging.message.conversation_id")}},
		{ack, map[string]string{"messaging.system": "rabbitmq", "messaging.operation.type": "settle"}},
	} {
		for k, v := range c.want {
			if got := c.s.attr(k); got != v || v == "" {
				t.Errorf("%s %q: %s = %q, want %q", c.s.service, c.s.Name, k, got, v)
			}
		}
	}
	if ack.attr("messaging.batch.message_count") == "" && !ack.hasEvent("held: acked with a later delivery's multiple ack") {
		t.Errorf("ack span says neither how many it acked nor that it was held: %v", ack.Attributes)
	}
	for _, c := range []struct {
		service, system, root string
	}{
		{"oneoffice-gateway", "redis", server.id()},
		{"oneoffice-gateway", "postgresql", server.id()}, // the key looked up: the stack's first call
		{"oneoffice-worker", "redis", consumer.id()},
		{"oneoffice-worker", "postgresql", consumer.id()},
	} {
		if !slices.ContainsFunc(spans, func(x span) bool {
			return x.service == c.service && x.attr("db.system") == c.system || x.attr("db.system.name") == c.system && x.service == c.service
		}) {
			t.Errorf("no %s span in %s", c.system, c.service)
		}
		for _, x := range spans {
			if x.service == c.service && (x.attr("db.system") == c.system || x.attr("db.system.name") == c.system) && !under(spans, x, c.root) {
				t.Errorf("%s span %q in %s is not under the call's span", c.system, x.Name, c.service)
			}
		}
	}

	// A replay, a 4xx and a 202 are told apart on their server spans.
	rs := one(t, rcv.trace(traceReplay), "replayed call's server span", func(s span) bool { return s.Kind == tracepb.Span_SPAN_KIND_SERVER })
	if !rs.hasEvent("idempotent replay") || rs.attr("oneoffice.idempotency") != "replayed" || rs.attr("http.response.status_code") != "200" {
		t.Errorf("replayed call's span: events %v attributes %v", rs.Events, rs.Attributes)
	}
	if n := len(rcv.trace(traceReplay)); slices.ContainsFunc(rcv.trace(traceReplay), func(s span) bool { return s.service == "oneoffice-worker" }) {
		t.Errorf("a replay reached the worker: %d spans", n)
	}
	bs := one(t, rcv.trace(trace4xx), "refused call's server span", func(s span) bool { return s.Kind == tracepb.Span_SPAN_KIND_SERVER })
	if bs.attr("http.response.status_code") != "400" || bs.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("4xx call's span: status code %s, span status %v (a 4xx is the caller's error, not the server's)",
			bs.attr("http.response.status_code"), bs.Status)
	}
	ps := one(t, rcv.trace(trace202), "202 call's server span", func(s span) bool { return s.Kind == tracepb.Span_SPAN_KIND_SERVER })
	if ps.attr("http.response.status_code") != "202" || !ps.hasEvent("answered 202 pending") {
		t.Errorf("202 call's span: attributes %v events %v", ps.Attributes, ps.Events)
	}
	if !slices.ContainsFunc(rcv.trace(trace202), func(s span) bool {
		return s.Kind == tracepb.Span_SPAN_KIND_CONSUMER && s.attr("oneoffice.request_id") == pending
	}) {
		t.Errorf("the 202 call's command has no consumer span in its trace:%s", describe(rcv.trace(trace202)))
	}
}

// call202 makes a call answered 202: the order's row is held locked, so the
// worker's suspend waits past the gateway's RPC_TIMEOUT. It returns the
// call's request id once the lock is gone and the command has run.
func call202(t *testing.T, s *Stack, traceparent string) string {
	t.Helper()
	s.Want(200, "createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}})
	s.Want(200, "createFirstOrder", m{"customer": "C1", "id": "O1", "product": "oo-lite", "licenses": 5, "duration": "monthly"})
	ctx := context.Background()
	lock, err := s.DB().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, `SELECT 1 FROM orders WHERE remote_id = 'O1' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	const rid = "traced-202"
	r := s.CallOnce("suspendOrder", m{"id": "O1"}, "traceparent", traceparent, "X-Request-Id", rid)
	if r.Status != 202 {
		t.Fatalf("suspend behind a locked row: %d %s, want 202", r.Status, r.Body)
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(settleWithin)
	for s.Count(`SELECT count(*) FROM command_ledger WHERE request_id = $1`, rid) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the call answered 202 was not recorded within %v", settleWithin)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return rid
}

// hasExemplar reports whether p's /metrics, asked for in the OpenMetrics
// format, holds an exemplar of trace id on a series of metric.
func hasExemplar(t *testing.T, p *Proc, metric, trace string) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.Metrics+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("/metrics answered %s to a scraper asking for OpenMetrics", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), metric+"{") && strings.Contains(sc.Text(), `# {trace_id="`+trace+`"}`) {
			return true
		}
	}
	return false
}

// With no endpoint, or with OTEL_SDK_DISABLED=true, nothing is exported: the
// processes say tracing is off and the receiver they were pointed at hears
// nothing; a partner's traceparent still reaches the answer, the log lines
// and the ledger row, passed through as it came.
func TestNothingIsExportedWithoutAnEndpoint(t *testing.T) {
	t.Parallel()
	rcv := newOTLPReceiver(t)
	s := NewStack(t, "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=")
	gw := s.StartGateway()
	w := s.StartWorker("OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.URL, "OTEL_SDK_DISABLED=true")
	const trace = "00-8bf92f3577b34da6a3ce929d0e0e4730-00f067aa0ba902b7-01"
	r := s.Call("createCustomer", primer, "traceparent", trace, "X-Request-Id", "untraced")
	if r.Status != 200 || r.Header.Get("traceparent") != trace {
		t.Fatalf("createCustomer: %d, traceparent %q; want 200 and the caller's traceparent", r.Status, r.Header.Get("traceparent"))
	}
	if n := s.Count(`SELECT count(*) FROM command_ledger WHERE request_id = 'untraced' AND trace_id = $1`, trace[3:35]); n != 1 {
		t.Errorf("ledger rows with the caller's trace id: %d, want 1", n)
	}
	gw.Stop()
	w.Stop()
	for _, p := range []*Proc{gw, w} {
		if !strings.Contains(p.Log(), `"tracing":false`) {
			t.Errorf("%s did not say tracing is off", p.cmd.Path)
		}
		if l := logLines(t, p, "untraced"); len(l) != 1 || l[0]["trace_id"] != trace[3:35] {
			t.Errorf("%s log lines: %v, want one with the caller's trace id", p.cmd.Path, l)
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.requests != 0 {
		t.Errorf("the receiver got %d export requests from processes with tracing off", rcv.requests)
	}
}
