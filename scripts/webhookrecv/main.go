// Command webhookrecv is a partner's webhook endpoint for load runs
// (scripts/load.sh with WEBHOOKS=1): it verifies every request with the
// Standard Webhooks library, answers 204, and at SIGTERM prints what it got:
// requests, distinct webhook-ids, repeats of an id, and refused signatures.
//
//	webhookrecv -addr 127.0.0.1:PORT -secret-file FILE
//
// The secret file holds the whsec_ secret `bin/gateway webhooks set` printed;
// it is read on the first request, so the receiver can start before the
// endpoint is set.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

type receiver struct {
	secretFile string
	mu         sync.Mutex
	wh         *standardwebhooks.Webhook
	requests   int
	ids        map[string]int
	bad        int
}

func (r *receiver) verifier() (*standardwebhooks.Webhook, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wh != nil {
		return r.wh, nil
	}
	b, err := os.ReadFile(r.secretFile)
	if err != nil {
		return nil, err
	}
	wh, err := standardwebhooks.NewWebhook(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, err
	}
	r.wh = wh
	return wh, nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	wh, err := r.verifier()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	verr := wh.Verify(body, req.Header)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if verr != nil {
		r.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	r.ids[req.Header.Get("webhook-id")]++
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) report() {
	r.mu.Lock()
	defer r.mu.Unlock()
	repeats := 0
	for _, n := range r.ids {
		repeats += n - 1
	}
	fmt.Printf("webhookrecv: requests=%d distinct_ids=%d repeats=%d bad_signatures=%d\n",
		r.requests, len(r.ids), repeats, r.bad)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	secretFile := flag.String("secret-file", "", "file holding the endpoint's whsec_ secret")
	flag.Parse()
	if *secretFile == "" {
		log.Fatal("webhookrecv: -secret-file is required")
	}
	r := &receiver{secretFile: *secretFile, ids: make(map[string]int)}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut) // the report below is what matters
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
	r.report()
}
