package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// callFn makes one call and returns "" on success or a label for the failure.
type callFn func(ctx context.Context) string

// callTimeout bounds one call: well past the gateway's 4 s RPC deadline, so
// a slow call shows up as a 202 rather than as a client timeout.
const callTimeout = 10 * time.Second

// closedLoop keeps c calls in flight for d: each of c callers sends its next
// call as soon as the previous one is answered.
func closedLoop(ctx context.Context, key, phase string, call callFn, c int, d time.Duration) Row {
	rec := newRecorder()
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(end) {
				t := time.Now()
				rec.add(call(ctx), time.Since(t))
			}
		})
	}
	wg.Wait()
	return rec.row(key, phase, time.Since(start))
}

// openLoop sends calls at rate per second for d whatever the answers, each
// in its own goroutine, with at most maxInFlight outstanding: a call due when
// the bound is reached is not sent and counts as "shed". Latency is measured
// from the time a call was due, so a late pacer shows up in it.
func openLoop(ctx context.Context, key, phase string, call callFn, rate float64, d time.Duration, maxInFlight int) Row {
	rec := newRecorder()
	if rate <= 0 {
		rec.add("no rate", 0)
		return rec.row(key, phase, 0)
	}
	interval := time.Duration(float64(time.Second) / rate)
	slots := make(chan struct{}, maxInFlight)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var wg sync.WaitGroup
	start := time.Now()
	for due := start; due.Before(start.Add(d)); due = due.Add(interval) {
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case slots <- struct{}{}:
		default:
			rec.add("shed", 0)
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			label := call(ctx)
			rec.add(label, time.Since(due))
		})
	}
	wg.Wait()
	row := rec.row(key, phase, d)
	row.Offered = rate
	return row
}

// apiClient sends createCustomer calls to the gateway the way partners do:
// GET with a JSON body and x-api-key, on kept-alive connections.
type apiClient struct {
	http   *http.Client
	url    string
	key    string
	prefix string
	seq    atomic.Uint64
}

func newAPIClient(url, key string, cfg config) *apiClient {
	conns := max(cfg.c, cfg.maxInFlight)
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     50 * time.Second, // below the gateway's 60 s
		DisableCompression:  true,
	}
	return &apiClient{
		http:   &http.Client{Transport: tr},
		url:    url,
		key:    key,
		prefix: fmt.Sprintf("bench-%d", time.Now().Unix()),
	}
}

func (a *apiClient) close() { a.http.CloseIdleConnections() }

// createCustomer creates a customer with a new id and reports the outcome.
func (a *apiClient) createCustomer(ctx context.Context) string {
	status, _, err := a.createCustomerBody(ctx)
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case err != nil:
		return "transport"
	case status != http.StatusOK:
		return strconv.Itoa(status)
	}
	return ""
}

func (a *apiClient) createCustomerBody(ctx context.Context) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	n := a.seq.Add(1)
	body := createCustomerCall(fmt.Sprintf("%s-%d", a.prefix, n), n)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", a.key)
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// createCustomerCall is the body of a createCustomer call of customer id, the
// n-th of the bench, made from the protocol's own types.
func createCustomerCall(id string, n uint64) []byte {
	b, err := json.Marshal(struct {
		Method string                        `json:"method"`
		Params protocol.CreateCustomerParams `json:"params"`
	}{protocol.CreateCustomer, protocol.CreateCustomerParams{
		ID:    id,
		Name:  fmt.Sprintf("Bench Customer %d", n),
		Admin: &protocol.Admin{Email: fmt.Sprintf("admin%d@bench.example.com", n)},
	}})
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return b
}

// warmUp checks one createCustomer answer, then loads the stack unmeasured for
// cfg.warmUp so that connections and pools are open before the first run.
func warmUp(ctx context.Context, api *apiClient, cfg config) error {
	status, body, err := api.createCustomerBody(ctx)
	if err != nil {
		return fmt.Errorf("first createCustomer: %w", err)
	}
	if status != http.StatusOK || !strings.Contains(string(body), `"remoteId"`) {
		return fmt.Errorf("first createCustomer: status %d: %s", status, body)
	}
	if cfg.warmUp > 0 {
		progress("warm-up: %d in flight for %s", cfg.c, cfg.warmUp)
		closedLoop(ctx, "", "", api.createCustomer, cfg.c, cfg.warmUp)
	}
	return ctx.Err()
}
