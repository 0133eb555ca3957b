// Package admin serves a process's admin port: /metrics for Prometheus,
// /healthz (the process is alive), /readyz (its dependencies answer) and
// /debug/pprof/ profiles.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/oneoffice/provisioner/shared/netx"
)

// Check tells whether one dependency answers.
type Check struct {
	Name string
	Ping func(ctx context.Context) error
}

// NewRegistry returns a registry with the Go runtime and process collectors
// and the count of connections opened to each dependency (shared/netx).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), netx.Connects)
	return reg
}

// ProbeInterval is how often the dependencies are checked for
// oneoffice_dependency_up, whatever the traffic.
const ProbeInterval = 5 * time.Second

// Server is the admin HTTP server.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	checks []Check
	up     *prometheus.GaugeVec
	stop   chan struct{}
	once   sync.Once
}

// Listen binds addr and returns a server ready to Serve.
func Listen(addr string, reg *prometheus.Registry, checks []Check) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	// OpenMetrics, when the scraper asks for it, carries the latency
	// histograms' exemplars (trace ids); the text format leaves them out.
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true}))
	// Profiles for operators: the admin port is internal, like /metrics.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	s := &Server{ln: ln, checks: checks, stop: make(chan struct{})}
	s.up = promauto.With(reg).NewGaugeVec(prometheus.GaugeOpts{
		Name: "oneoffice_dependency_up",
		Help: "1 when the dependency (database, redis, broker) answered the last probe (every 5s, and each /readyz).",
	}, []string{"dependency"})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if failed := s.check(r.Context()); len(failed) > 0 {
			http.Error(w, "not ready: "+strings.Join(failed, "; "), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 60 * time.Second} // room for a 60 s CPU profile
	return s, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves, and probes the dependencies, until Stop.
func (s *Server) Serve(log *slog.Logger) {
	go s.probe()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("admin server failed", "error", err)
	}
}

// check pings every dependency, records the answers in
// oneoffice_dependency_up and returns the failures.
func (s *Server) check(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var failed []string
	for _, c := range s.checks {
		v := 1.0
		if err := c.Ping(ctx); err != nil {
			v = 0
			failed = append(failed, c.Name+": "+err.Error())
		}
		s.up.WithLabelValues(c.Name).Set(v)
	}
	return failed
}

func (s *Server) probe() {
	t := time.NewTicker(ProbeInterval)
	defer t.Stop()
	for {
		s.check(context.Background())
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// Stop shuts the server down; it is safe to call twice.
func (s *Server) Stop(ctx context.Context) error {
	s.once.Do(func() { close(s.stop) })
	return s.srv.Shutdown(ctx)
}
