package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches and parses a process's /metrics.
func scrape(t *testing.T, p *Proc) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + p.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// value returns the counter value, gauge value or histogram count of the
// series of family name whose labels include want.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	mf, ok := mfs[name]
	if !ok {
		return -1
	}
	var sum float64
	for _, mt := range mf.Metric {
		labels := map[string]string{}
		for _, l := range mt.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case mt.Counter != nil:
			sum += mt.Counter.GetValue()
		case mt.Gauge != nil:
			sum += mt.Gauge.GetValue()
		case mt.Histogram != nil:
			sum += float64(mt.Histogram.GetSampleCount())
		}
	}
	return sum
}

func TestMetricsCountEveryCall(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	gw := s.StartGateway()
	w := s.StartWorker()
	for _, id := range []string{"A", "B", "C"} {
		s.Want(200, "createCustomer", m{"id": id, "name": id, "admin": m{"email": "a@example.com"}})
	}
	s.Want(200, "createCustomer", m{"id": "A", "name": "A", "admin": m{"email": "a@example.com"}}) // replayed
	s.Want(404, "getCustomer", m{"id": "nope"})                                                    // a read: answered by the gateway alone
	s.Want(404, "suspendOrder", m{"id": "nope"})                                                   // a command the worker refuses
	s.Want(400, "createFirstOrder", m{"customer": "A", "id": "O", "product": "x", "licenses": 1, "duration": "monthly"})
	if r := s.Do("", envelope("getCustomer", m{"id": "A"})); r.Status != 401 {
		t.Fatalf("no key: %d", r.Status)
	}
	if r := s.Do("oo_wrong", envelope("getCustomer", m{"id": "A"})); r.Status != 401 {
		t.Fatalf("bad key: %d", r.Status)
	}
	// The worker counts a command after its reply, so wait for the last one.
	var wm map[string]*dto.MetricFamily
	for deadline := time.Now().Add(settleWithin); ; time.Sleep(50 * time.Millisecond) {
		if wm = scrape(t, w); value(wm, "oneoffice_worker_commands_total", nil) >= 4 || time.Now().After(deadline) {
			break
		}
	}

	g := scrape(t, gw)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"oneoffice_http_requests_total", map[string]string{"method": "createCustomer", "code": "200"}, 4},
		{"oneoffice_http_requests_total", map[string]string{"method": "getCustomer", "code": "404"}, 1},
		{"oneoffice_http_requests_total", map[string]string{"method": "createFirstOrder", "code": "400"}, 1},
		{"oneoffice_http_requests_total", map[string]string{"method": "unknown", "code": "401"}, 2},
		{"oneoffice_http_requests_total", map[string]string{"method": "suspendOrder", "code": "404"}, 1},
		{"oneoffice_http_requests_total", nil, 9},
		{"oneoffice_http_request_duration_seconds", map[string]string{"method": "createCustomer"}, 4},
		{"oneoffice_http_request_duration_seconds", map[string]string{"method": "getCustomer"}, 1},
		{"oneoffice_idempotency_outcomes_total", map[string]string{"outcome": "new"}, 3},
		{"oneoffice_idempotency_outcomes_total", map[string]string{"outcome": "replayed"}, 1},
		{"oneoffice_idempotency_outcomes_total", map[string]string{"outcome": "mismatch"}, 0},
		{"oneoffice_auth_failures_total", map[string]string{"reason": "missing"}, 1},
		{"oneoffice_auth_failures_total", map[string]string{"reason": "invalid"}, 1},
		{"oneoffice_gateway_rpc_duration_seconds", nil, 4},
		{"oneoffice_gateway_publish_confirm_seconds", nil, 4},
		{"oneoffice_gateway_pending_total", nil, 0},
		{"oneoffice_http_in_flight_requests", nil, 0},
		{"oneoffice_gateway_broker_connected", nil, 1},
		{"oneoffice_dependency_up", map[string]string{"dependency": "redis"}, 1},
		{"oneoffice_dependency_up", map[string]string{"dependency": "database"}, 1},
		{"oneoffice_dependency_up", map[string]string{"dependency": "broker"}, 1},
	} {
		if got := value(g, c.name, c.labels); got != c.want {
			t.Errorf("gateway %s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"oneoffice_worker_commands_total", map[string]string{"method": "createCustomer", "outcome": "ok"}, 3},
		{"oneoffice_worker_commands_total", map[string]string{"method": "suspendOrder", "outcome": "rejected"}, 1},
		{"oneoffice_worker_commands_total", map[string]string{"method": "getCustomer"}, 0},
		{"oneoffice_worker_commands_total", nil, 4},
		{"oneoffice_worker_command_duration_seconds", nil, 4},
		{"oneoffice_worker_dead_lettered_total", nil, 0},
		{"oneoffice_worker_in_flight", nil, 0},
		{"oneoffice_worker_concurrency", nil, 32},
		{"oneoffice_worker_broker_connected", nil, 1},
		{"oneoffice_dependency_up", nil, 3},
	} {
		if got := value(wm, c.name, c.labels); got != c.want {
			t.Errorf("worker %s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Each process dialed each of its dependencies, and every dial
	// succeeded: the connections opened are counted by dependency.
	for _, dep := range []string{"database", "redis", "broker"} {
		for name, m := range map[string]map[string]*dto.MetricFamily{"gateway": g, "worker": wm} {
			ok := value(m, "oneoffice_dependency_connects_total", map[string]string{"dependency": dep, "outcome": "ok"})
			failed := value(m, "oneoffice_dependency_connects_total", map[string]string{"dependency": dep, "outcome": "failed"})
			if ok < 1 || failed != 0 {
				t.Errorf("%s connects to %s: %v ok, %v failed; want at least 1 ok and none failed", name, dep, ok, failed)
			}
		}
	}
	// A process that did little may have used less than one clock tick of
	// CPU, so the collectors are checked by their resident memory and
	// goroutines, which are never zero.
	if g["process_cpu_seconds_total"] == nil || value(g, "process_resident_memory_bytes", nil) <= 0 ||
		value(wm, "go_goroutines", nil) <= 0 {
		t.Error("runtime and process collectors missing")
	}
}

// logLines returns the JSON log lines of a process that carry request_id rid.
func logLines(t *testing.T, p *Proc, rid string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.Log()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["request_id"] == rid {
			out = append(out, line)
		}
	}
	return out
}

func TestLogsFollowOneRequestWithoutSecrets(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	gw := s.StartGateway()
	w := s.StartWorker()
	const trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	s.Want(200, "createCustomer", primer, "X-Request-Id", "follow-me-1", "traceparent", trace)
	s.Want(200, "createUser", m{"email": "ann@example.com"}, "X-Request-Id", "follow-me-2")
	reset := s.Want(200, "resetUser", m{"email": "ann@example.com"}, "X-Request-Id", "follow-me-3")
	// Log lines are flushed every 100 ms.
	var gl, wl []map[string]any
	for deadline := time.Now().Add(settleWithin); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if gl, wl = logLines(t, gw, "follow-me-1"), logLines(t, w, "follow-me-1"); len(gl) > 0 && len(wl) > 0 {
			break
		}
	}
	if len(gl) != 1 || len(wl) != 1 {
		t.Fatalf("log lines for the request: gateway %d, worker %d", len(gl), len(wl))
	}
	for _, l := range []map[string]any{gl[0], wl[0]} {
		if l["method"] != "createCustomer" || l["partner"] == nil || l["trace_id"] != trace[3:35] {
			t.Errorf("log line %v", l)
		}
	}
	if gl[0]["status"] != float64(200) || gl[0]["duration_ms"] == nil || gl[0]["idempotency"] != "new" {
		t.Errorf("gateway line %v", gl[0])
	}
	for _, p := range []*Proc{gw, w} {
		if strings.Contains(p.Log(), s.Key) || strings.Contains(p.Log(), reset["resetToken"].(string)) {
			t.Errorf("%s logged a secret", p.cmd.Path)
		}
	}
}

// TestServingProcessesTakeTheirRuntimeSettingsFromConfiguration checks that a
// gateway runs on one processor unless GOMAXPROCS says otherwise, that a
// worker given GOMAXPROCS=2 runs on two, and that both print the settings with
// their configuration, GODEBUG as they were launched with it.
func TestServingProcessesTakeTheirRuntimeSettingsFromConfiguration(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	gw := s.StartGateway("GOMAXPROCS=", "GODEBUG=schedtrace=2147483647")
	w := s.StartWorker("GODEBUG=schedtrace=0", "GOMAXPROCS=2")
	for _, tc := range []struct {
		p            *Proc
		msg          string
		debug, procs string
	}{
		{gw, "starting gateway", "schedtrace=2147483647", "1"},
		{w, "starting worker", "schedtrace=0", "2"},
	} {
		if got := metricValue(t, tc.p, "go_sched_gomaxprocs_threads"); got != tc.procs {
			t.Errorf("%s: go_sched_gomaxprocs_threads %q, want %s", tc.msg, got, tc.procs)
		}
		// Log lines are flushed every 100 ms.
		var logged map[string]any
		for deadline := time.Now().Add(settleWithin); logged == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			sc := bufio.NewScanner(strings.NewReader(tc.p.Log()))
			for sc.Scan() {
				var line struct {
					Msg    string         `json:"msg"`
					Config map[string]any `json:"config"`
				}
				if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == tc.msg {
					logged = line.Config
				}
			}
		}
		if logged["godebug"] != tc.debug || fmt.Sprint(logged["gomaxprocs"]) != tc.procs {
			t.Errorf("%s: configuration logged godebug %v and gomaxprocs %v, want %q and %s",
				tc.msg, logged["godebug"], logged["gomaxprocs"], tc.debug, tc.procs)
		}
	}
}

// metricValue is the value of an unlabelled metric on the process's admin port.
func metricValue(t *testing.T, p *Proc, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	t.Fatalf("%s not on %s/metrics", name, p.Metrics)
	return ""
}
