package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// The partner mix: what a partner does for each new customer. createCustomer,
// then its first order, then a suspend of that order and a read of it, each
// step sent once the one before succeeded. A call takes the oldest step
// that is ready, or starts a new customer when none is, so the four methods
// are sent in equal numbers once the loop runs.

// mixStep is one call of the mix.
type mixStep struct {
	kind     int // stepCustomer, ...
	customer string
	order    string
}

const (
	stepCustomer = iota
	stepOrder
	stepSuspend
	stepRead
	mixSteps
)

// Labels of mix calls that are not successes, besides HTTP statuses.
const (
	labelOverloaded = "overloaded" // 503 overloaded: refused by admission control
	labelPending    = "202"
)

// mix sends the partner mix through api.
type mix struct {
	api   *apiClient
	ready chan mixStep // follow-up steps, oldest first
	// backoff makes a caller refused 503 overloaded wait its Retry-After
	// before its next call, as a partner does: a closed loop's callers. An
	// open loop's arrivals come at their rate whatever the answers.
	backoff bool
}

func newMix(api *apiClient, backoff bool) *mix {
	return &mix{api: api, ready: make(chan mixStep, 1<<16), backoff: backoff}
}

// next is the step to send now.
func (m *mix) next() mixStep {
	select {
	case s := <-m.ready:
		return s
	default:
		n := m.api.seq.Add(1)
		return mixStep{kind: stepCustomer, customer: fmt.Sprintf("%s-m%d", m.api.prefix, n)}
	}
}

// push makes s ready; a full queue drops it (the mix then starts more
// customers).
func (m *mix) push(s mixStep) {
	select {
	case m.ready <- s:
	default:
	}
}

// call sends one step and returns its outcome label ("" on success). A step
// refused overloaded is made ready again after the Retry-After.
func (m *mix) call(ctx context.Context) string {
	s := m.next()
	status, retry, err := m.send(ctx, s)
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case err != nil:
		return "transport"
	case status == http.StatusOK:
		if s.kind+1 < mixSteps {
			next := s
			next.kind++
			if next.kind == stepOrder {
				next.order = "o-" + s.customer
			}
			m.push(next)
		}
		return ""
	case status == http.StatusAccepted:
		return labelPending
	case status == http.StatusServiceUnavailable && retry > 0:
		time.AfterFunc(retry, func() { m.push(s) })
		if m.backoff {
			select {
			case <-time.After(retry):
			case <-ctx.Done():
			}
		}
		return labelOverloaded
	}
	return strconv.Itoa(status)
}

// send makes the call of s; retry is the Retry-After of a 503 overloaded.
func (m *mix) send(ctx context.Context, s mixStep) (status int, retry time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.api.url, bytes.NewReader(mixBody(s)))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", m.api.key)
	resp, err := m.api.http.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable && bytes.Contains(b, []byte(`"`+protocol.CodeOverloaded+`"`)) {
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		retry = time.Duration(max(1, secs)) * time.Second
	}
	return resp.StatusCode, retry, err
}

// mixBody is the call of step s, made from the protocol's own types.
func mixBody(s mixStep) []byte {
	var method string
	var params any
	switch s.kind {
	case stepCustomer:
		return createCustomerCall(s.customer, 0)
	case stepOrder:
		method, params = protocol.CreateFirstOrder, protocol.CreateFirstOrderParams{Customer: s.customer, ID: s.order,
			Product: "erp-std", Licenses: 5, Duration: protocol.Monthly}
	case stepSuspend:
		method, params = protocol.SuspendOrder, protocol.OrderRef{ID: s.order}
	default:
		method, params = protocol.GetOrder, protocol.OrderRef{ID: s.order}
	}
	b, err := json.Marshal(struct {
		Method string `json:"method"`
		Params any    `json:"params"`
	}{method, params})
	if err != nil {
		panic(err) // strings and numbers only: cannot fail
	}
	return b
}
