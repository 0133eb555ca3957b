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
	"sync/atomic"
	"time"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// callTimeout bounds one call: well past the gateway's 4 s RPC deadline, so
// a slow call shows up as a 202 rather than as a client timeout.
const callTimeout = 10 * time.Second

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
