package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// WebhookReceiver is a partner's webhook endpoint on a free loopback port:
// it verifies every request with the Standard Webhooks library against the
// endpoint's secret and answers 204, or 401 to a bad signature.
type WebhookReceiver struct {
	URL string // where to send the events

	srv *http.Server
	mu  sync.Mutex
	wh  *standardwebhooks.Webhook
	got WebhookCounts
	ids map[string]int
}

// WebhookCounts is what a receiver got.
type WebhookCounts struct {
	Requests, DistinctIDs, Repeats, BadSignatures int
}

func (c WebhookCounts) String() string {
	return fmt.Sprintf("requests=%d distinct_ids=%d repeats=%d bad_signatures=%d", c.Requests, c.DistinctIDs, c.Repeats, c.BadSignatures)
}

// StartWebhookReceiver starts a receiver; SetSecret must be called before
// the first event comes, which is refused until then.
func StartWebhookReceiver() (*WebhookReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &WebhookReceiver{URL: "http://" + ln.Addr().String() + "/hooks", ids: map[string]int{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

// SetSecret sets the endpoint's whsec_ secret (what `gateway webhooks set`
// printed).
func (r *WebhookReceiver) SetSecret(secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	r.mu.Lock()
	r.wh = wh
	r.mu.Unlock()
	return err
}

func (r *WebhookReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got.Requests++
	if err != nil || r.wh == nil || r.wh.Verify(body, req.Header) != nil {
		r.got.BadSignatures++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	id := req.Header.Get("webhook-id")
	if r.ids[id]++; r.ids[id] > 1 {
		r.got.Repeats++
	}
	w.WriteHeader(http.StatusNoContent)
}

// Counts is what the receiver got so far.
func (r *WebhookReceiver) Counts() WebhookCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.got
	c.DistinctIDs = len(r.ids)
	return c
}

// Close stops the receiver.
func (r *WebhookReceiver) Close(ctx context.Context) error { return r.srv.Shutdown(ctx) }
