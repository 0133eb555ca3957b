package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// The harness of the webhook tests: a partner's endpoint that verifies what
// it gets, and helpers to set endpoints and watch events.

// delivery is one request a receiver got, its signature verified.
type delivery struct {
	ID    string
	Path  string
	Body  []byte
	Event event
}

// event is a webhook event's body.
type event struct {
	Type       string `json:"type"`
	RequestID  string `json:"requestId"`
	Method     string `json:"method"`
	OrderID    string `json:"orderId"`
	OccurredAt int64  `json:"occurredAt"`
	Response   struct {
		Status int             `json:"status"`
		Body   json.RawMessage `json:"body"`
	} `json:"response"`
}

// receiver is a partner's endpoint: a real HTTP server on the loopback
// that verifies every request with the Standard Webhooks library and
// answers what answer says.
type receiver struct {
	t    *testing.T
	addr string
	srv  *http.Server
	mu   sync.Mutex
	wh   *standardwebhooks.Webhook
	got  []delivery
	bad  []string
	// answer is the status for the n-th request (1-based) of one webhook-id
	// at path; 200 when nil. A 3xx redirects to /elsewhere.
	answer func(d delivery, n int) int
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{t: t, addr: testenv.FreeAddr(t)}
	r.start()
	t.Cleanup(r.stop)
	return r
}

// URL is the endpoint's URL.
func (r *receiver) URL() string { return "http://" + r.addr + "/hooks" }

func (r *receiver) start() {
	r.t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(ln)
}

// answerWith makes f the answer of the next requests.
func (r *receiver) answerWith(f func(d delivery, n int) int) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

// stop takes the endpoint down: nothing listens on its port until start.
func (r *receiver) stop() { r.srv.Close() }

// trust verifies the next requests with secret.
func (r *receiver) trust(secret string) {
	r.t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		r.t.Fatalf("secret %q: %v", secret, err)
	}
	r.mu.Lock()
	r.wh = wh
	r.mu.Unlock()
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	d := delivery{ID: req.Header.Get("webhook-id"), Path: req.URL.Path, Body: body}
	r.mu.Lock()
	wh, answer := r.wh, r.answer
	var err error
	if wh == nil {
		err = errors.New("no secret to verify with")
	} else {
		err = wh.Verify(body, req.Header)
	}
	if err == nil {
		err = json.Unmarshal(body, &d.Event)
	}
	if err == nil {
		err = checkEvent(body)
	}
	if err != nil || req.Method != http.MethodPost {
		r.bad = append(r.bad, d.ID+": "+req.Method+" "+string(body)+": "+errString(err))
	}
	r.got = append(r.got, d)
	n := 0
	for _, g := range r.got {
		if g.ID == d.ID && g.Path == d.Path {
			n++
		}
	}
	r.mu.Unlock()
	status := http.StatusOK
	if answer != nil {
		status = answer(d, n)
	}
	if status >= 300 && status < 400 {
		w.Header().Set("Location", "/elsewhere")
	}
	w.WriteHeader(status)
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// deliveries are the requests received so far.
func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// waitFor waits until ok holds of the deliveries, and fails the test if one
// did not verify.
func (r *receiver) waitFor(what string, ok func([]delivery) bool) []delivery {
	r.t.Helper()
	deadline := time.Now().Add(arriveWithin)
	for {
		got := r.deliveries()
		r.mu.Lock()
		bad := slices.Clone(r.bad)
		r.mu.Unlock()
		if len(bad) > 0 {
			r.t.Fatalf("deliveries that do not verify: %v", bad)
		}
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("waiting for %s: after %v, got %d deliveries: %s", what, arriveWithin, len(got), summary(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// distinctIDs are the webhook-ids of the deliveries, in order of arrival.
func distinctIDs(got []delivery) []string {
	var ids []string
	for _, d := range got {
		if !slices.Contains(ids, d.ID) {
			ids = append(ids, d.ID)
		}
	}
	return ids
}

func summary(got []delivery) string {
	var b strings.Builder
	for _, d := range got {
		b.WriteString(d.ID + " " + d.Event.Type + " " + d.Event.Method + " " + d.Event.RequestID + "; ")
	}
	return b.String()
}

// webhookStack is a stack with a gateway and a worker whose partner's
// endpoint is r.
func webhookStack(t *testing.T, r *receiver, extra ...string) *Stack {
	t.Helper()
	s := NewStack(t, append(slices.Clone(webhookEnv), extra...)...)
	logOnFailure(t, s.StartWorker())
	s.StartGateway()
	if r != nil {
		r.trust(s.setEndpoint("Partner A", r.URL()))
	}
	return s
}

// logOnFailure shows the dispatcher's log lines when the test fails.
func logOnFailure(t *testing.T, w *Proc) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, line := range strings.Split(w.Log(), "\n") {
			if strings.Contains(line, "webhook") {
				t.Log(line)
			}
		}
	})
}

// setEndpoint runs webhooks set and returns the secret it printed.
func (s *Stack) setEndpoint(partner, url string) string {
	s.t.Helper()
	secret := s.admin("webhooks", "set", "--partner", partner, "--url", url)
	if !strings.HasPrefix(secret, "whsec_") || strings.ContainsAny(secret, " \n") {
		s.t.Fatalf("webhooks set printed %q, want only a whsec_ secret", secret)
	}
	return secret
}

// adminErr runs an admin subcommand that must fail, and returns its error.
func (s *Stack) adminErr(env []string, args ...string) error {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	out, err := testenv.Run(ctx, bins.Gateway(), append(slices.Clone(s.env), env...), args...)
	if err == nil {
		s.t.Fatalf("%v: succeeded (printed %q), want a refusal", args, out)
	}
	return err
}

// requestID is the X-Request-Id of an answer.
func requestID(t *testing.T, r Response) string {
	t.Helper()
	id := r.Header.Get("X-Request-Id")
	if id == "" {
		t.Fatalf("no X-Request-Id in %d %s", r.Status, r.Body)
	}
	return id
}

// eventState is an event's row, by the request id of its command.
func (s *Stack) eventState(requestID string) (status string, attempts int, lastStatus int, lastError string) {
	s.t.Helper()
	err := s.DB().QueryRow(context.Background(), `SELECT status, attempts, coalesce(last_status, 0),
		coalesce(last_error, '') FROM webhook_events WHERE body::jsonb->>'requestId' = $1`, requestID).
		Scan(&status, &attempts, &lastStatus, &lastError)
	if err != nil {
		s.t.Fatalf("the event of request %s: %v", requestID, err)
	}
	return
}

// waitEvent waits until ok holds of the event of the request.
func (s *Stack) waitEvent(requestID, what string, ok func(status string, attempts, lastStatus int, lastError string) bool) {
	s.t.Helper()
	deadline := time.Now().Add(arriveWithin)
	for {
		st, n, ls, le := s.eventState(requestID)
		if ok(st, n, ls, le) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("event of %s: waiting for %s: still %s after %d attempts (last %d %q)", requestID, what, st, n, ls, le)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
