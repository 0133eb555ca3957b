package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// maxAnswer bounds what is read of an endpoint's answer: only its status
// matters, and reading a little lets the connection be reused.
const maxAnswer = 4 << 10

// Message is one event on its way to an endpoint.
type Message struct {
	// ID is the webhook-id: the same for every attempt of one event, so
	// that the receiver can drop a duplicate.
	ID string
	// Body is the event's JSON, signed and sent as it is.
	Body []byte
}

// Send posts msg to url signed with secret, at now, and returns the
// endpoint's HTTP status. An error is a call that got no answer: refused
// by the policy (ErrRefused), a time-out, a connection that failed.
func Send(ctx context.Context, client *http.Client, url, secret string, msg Message, now time.Time) (int, error) {
	sig, err := Sign(secret, msg.ID, now, msg.Body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(msg.Body))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "OneOffice-Webhooks/1")
	req.Header.Set(HeaderID, msg.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	resp.Body.Close()
	return resp.StatusCode, nil
}
