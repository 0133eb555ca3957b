package testenv

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func TestWebhookReceiverCountsWhatItGot(t *testing.T) {
	r, err := StartWebhookReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(t.Context())
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("testenv-webhook-receiver-secret!"))
	signer, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"type":"ping"}`)
	send := func(id string, sign bool, want int) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, r.URL, bytes.NewReader(body))
		now := time.Now()
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("webhook-signature", "v1,bm90IGEgc2lnbmF0dXJl")
		if sign {
			sig, err := signer.Sign(id, now, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("webhook-signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("event %s (signed: %v): status %d, want %d", id, sign, resp.StatusCode, want)
		}
	}
	send("msg_1", true, http.StatusUnauthorized) // no secret yet
	if err := r.SetSecret(secret); err != nil {
		t.Fatal(err)
	}
	send("msg_1", true, http.StatusNoContent)
	send("msg_1", true, http.StatusNoContent)
	send("msg_2", false, http.StatusUnauthorized)
	want := WebhookCounts{Requests: 4, DistinctIDs: 1, Repeats: 1, BadSignatures: 2}
	if got := r.Counts(); got != want {
		t.Fatalf("counts %s, want %s", got, want)
	}
}
