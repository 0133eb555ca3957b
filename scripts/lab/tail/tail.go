// Package tail is `lab tail`: it receives the traces of a run and tells
// where the slowest calls spent their time, stage by stage.
//
// It listens for OTLP/HTTP trace exports, runs the command after "--" with
// OTEL_EXPORTER_OTLP_ENDPOINT pointing at itself (so the gateway and workers
// a `lab stack` or `make load` starts export there), and when the command
// has exited (its processes flush their spans as they stop) it prints, for
// every call answered through a worker, the stages of the critical path:
//
//	gateway in     the server span's start to the publish's: auth, validation, the idempotency key
//	to the worker  the publish's start to the consumer span's: publish, confirm, queue, prefetch
//	worker run     the consumer span's start to the reply's (PostgreSQL, its pool wait, the
//	               wait behind another command's batched insert, Redis inside)
//	back           the reply's start to the server span's end: reply queue, gateway, answer
//
// with the median of all calls beside the mean of the slowest -top share.
//
//	go run ./scripts/lab tail [-addr 127.0.0.1:4318] [-top 0.01] -- bash scripts/load.sh
package tail

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// rec is what the report needs of one span.
type rec struct {
	id, parent string
	service    string
	name       string
	kind       tracepb.Span_SpanKind
	system     string // db.system: postgresql, redis; "" for others
	method     string // oneoffice.method of a server span
	start, end int64  // Unix ns
}

func (r rec) dur() time.Duration { return time.Duration(r.end - r.start) }

// store keeps the spans received, by trace.
type store struct {
	mu     sync.Mutex
	traces map[string][]rec
	spans  int
}

// Run receives spans while the command runs, then reports.
func Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:4318", "OTLP/HTTP listen address")
	top := fs.Float64("top", 0.01, "the share of slowest calls to explain")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: lab tail [-addr A] [-top 0.01] -- COMMAND [ARGS]")
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	st := &store{traces: make(map[string][]rec)}
	srv := &http.Server{Handler: st, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	cmd := exec.CommandContext(ctx, fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+ln.Addr().String(),
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")
	runErr := cmd.Run()
	st.report(os.Stdout, *top)
	return runErr
}

func (st *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	var req collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	st.mu.Lock()
	for _, rs := range req.ResourceSpans {
		service := attr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				st.spans++
				id := hex.EncodeToString(s.TraceId)
				st.traces[id] = append(st.traces[id], rec{
					id: hex.EncodeToString(s.SpanId), parent: hex.EncodeToString(s.ParentSpanId),
					service: service, name: s.Name, kind: s.Kind,
					system: cmp.Or(attr(s.Attributes, "db.system.name"), attr(s.Attributes, "db.system")),
					method: attr(s.Attributes, "oneoffice.method"),
					start:  int64(s.StartTimeUnixNano), end: int64(s.EndTimeUnixNano),
				})
			}
		}
	}
	st.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			switch v := kv.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				return v.StringValue
			case *commonpb.AnyValue_IntValue:
				return fmt.Sprint(v.IntValue)
			}
		}
	}
	return ""
}

// stages of one call through a worker, in the order of its critical path.
var stageNames = []string{"total", "gateway in", "  of which Redis", "  of which PostgreSQL", "to the worker",
	"  of which publish to confirm", "worker run", "  of which PostgreSQL", "  of which waiting for a connection",
	"  of which queued behind a batched insert", "  of which Redis", "back to the gateway"}

type call struct {
	method string
	stages []time.Duration
}

// callOf reads the stages of a trace; ok is false for a call that did not
// go through a worker (refused, replayed in the gateway) or is incomplete.
func callOf(spans []rec) (c call, ok bool) {
	find := func(match func(rec) bool) (rec, bool) {
		i := slices.IndexFunc(spans, match)
		if i < 0 {
			return rec{}, false
		}
		return spans[i], true
	}
	server, ok1 := find(func(r rec) bool { return r.kind == tracepb.Span_SPAN_KIND_SERVER })
	pub, ok2 := find(func(r rec) bool { return r.kind == tracepb.Span_SPAN_KIND_PRODUCER && r.parent == server.id })
	cons, ok3 := find(func(r rec) bool { return r.kind == tracepb.Span_SPAN_KIND_CONSUMER && r.parent == pub.id })
	reply, ok4 := find(func(r rec) bool { return r.kind == tracepb.Span_SPAN_KIND_PRODUCER && r.parent == cons.id })
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return call{}, false
	}
	systems := make(map[string]string, len(spans))
	for _, r := range spans {
		systems[r.id] = r.system
	}
	// sum adds the spans of system (not those inside another of the same
	// system) under parent that start in [from, to).
	sum := func(parent, system string, from, to int64, name string) time.Duration {
		var d time.Duration
		for _, r := range spans {
			if r.parent == parent && r.system == system && (system == "" || systems[r.parent] != system) &&
				r.start >= from && r.start < to && (name == "" || r.name == name) {
				d += r.dur()
			}
		}
		return d
	}
	pgWorker := sum(cons.id, "postgresql", cons.start, reply.start, "")
	acquire := sum(cons.id, "postgresql", cons.start, reply.start, "pool.acquire")
	return call{method: server.method, stages: []time.Duration{
		server.dur(),
		time.Duration(pub.start - server.start),
		sum(server.id, "redis", server.start, pub.start, ""),
		sum(server.id, "postgresql", server.start, pub.start, ""),
		time.Duration(cons.start - pub.start),
		pub.dur(),
		time.Duration(reply.start - cons.start),
		pgWorker - acquire,
		acquire,
		sum(cons.id, "", cons.start, reply.start, "createCustomer insert queue"),
		sum(cons.id, "redis", cons.start, reply.start, ""),
		time.Duration(server.end - reply.start),
	}}, true
}

func (st *store) report(w io.Writer, top float64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var calls []call
	answeredInGateway := 0
	for _, spans := range st.traces {
		if c, ok := callOf(spans); ok {
			calls = append(calls, c)
		} else if slices.ContainsFunc(spans, func(r rec) bool { return r.kind == tracepb.Span_SPAN_KIND_SERVER }) {
			answeredInGateway++
		}
	}
	fmt.Fprintf(w, "\nlab tail: %d spans in %d traces; %d calls through a worker, %d answered in the gateway\n",
		st.spans, len(st.traces), len(calls), answeredInGateway)
	if len(calls) == 0 {
		return
	}
	slices.SortFunc(calls, func(a, b call) int { return cmp.Compare(b.stages[0], a.stages[0]) })
	n := max(1, int(float64(len(calls))*top+0.5))
	slow := calls[:n]
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "stage\tall calls p50 ms\tslowest %d (%.1f%%) mean ms\tshare of their total\t\n", n, top*100)
	for i, name := range stageNames {
		all := make([]time.Duration, len(calls))
		for j, c := range calls {
			all[j] = c.stages[i]
		}
		slices.Sort(all)
		var sum time.Duration
		for _, c := range slow {
			sum += c.stages[i]
		}
		mean := sum / time.Duration(n)
		var total time.Duration
		for _, c := range slow {
			total += c.stages[0]
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.0f%%\t\n", name, ms(all[len(all)/2]), ms(mean),
			100*float64(sum)/float64(total))
	}
	tw.Flush()
	methods := map[string]int{}
	for _, c := range slow {
		methods[c.method]++
	}
	fmt.Fprintf(w, "slowest %d by method: %v; the slowest: %.1f ms, the fastest of them: %.1f ms\n",
		n, methods, ms(slow[0].stages[0]), ms(slow[n-1].stages[0]))
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
