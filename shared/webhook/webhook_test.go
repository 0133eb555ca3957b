package webhook

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func TestSignatureVerifiesWithTheStandardLibrary(t *testing.T) {
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret %q: want whsec_...", secret)
	}
	body := []byte(`{"type":"command.succeeded","requestId":"r1"}`)
	now := time.Now()
	sig, err := Sign(secret, "msg_1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(HeaderID, "msg_1")
	h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderSignature, sig)
	if err := wh.Verify(body, h); err != nil {
		t.Fatalf("the standard library refuses our signature: %v", err)
	}
	h.Set(HeaderID, "msg_2")
	if err := wh.Verify(body, h); err == nil {
		t.Fatal("a signature verified under another webhook-id")
	}
	if _, err := Sign("oosig_abc", "msg_1", now, body); !errors.Is(err, ErrBadSecret) {
		t.Fatalf("a secret without whsec_: %v, want ErrBadSecret", err)
	}
}

func newKey(t *testing.T) string {
	t.Helper()
	return base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
}

func TestSealerOpensOnlyForItsPartnerAndKey(t *testing.T) {
	s, err := NewSealer(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.Seal(7, "whsec_c2VjcmV0")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "whsec_") {
		t.Fatal("the sealed secret holds it in clear")
	}
	if got, err := s.Open(7, sealed); err != nil || got != "whsec_c2VjcmV0" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open(8, sealed); err == nil {
		t.Fatal("a secret sealed for partner 7 opened for partner 8")
	}
	other, _ := NewSealer(base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210")))
	if _, err := other.Open(7, sealed); err == nil {
		t.Fatal("a secret opened under another key")
	}
	if _, err := NewSealer(""); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: %v, want ErrNoKey", err)
	}
	if _, err := NewSealer("c2hvcnQ="); err == nil {
		t.Fatal("a 5-byte key accepted")
	}
}

func TestCheckURL(t *testing.T) {
	p := Policy{AllowHosts: []string{"receiver.test", "127.0.0.1"}}
	for _, tc := range []struct {
		url  string
		rule string // "" when accepted
	}{
		{"https://hooks.example.com/oneoffice", ""},
		{"https://hooks.example.com:8443/x?y=1", ""},
		{"http://receiver.test/hooks", ""},
		{"http://127.0.0.1:8080/hooks", ""},
		{"https://RECEIVER.test/hooks", ""},
		{"http://hooks.example.com/x", "must be https"},
		{"ftp://hooks.example.com/x", "absolute https URL"},
		{"/relative", "absolute https URL"},
		{"https://user:pw@hooks.example.com/", "user or password"},
		{"https://hooks.example.com/#frag", "fragment"},
		{"https://10.0.0.1/x", "private"},
		{"https://192.168.1.1/x", "private"},
		{"https://127.0.0.2/x", "private"},
		{"https://169.254.169.254/latest/meta-data", "private"},
		{"https://[::1]/x", "private"},
		{"https://[fe80::1]/x", "private"},
		{"https://[::ffff:10.0.0.1]/x", "private"},
		{"https://100.64.0.1/x", "private"},
		{"https://0.0.0.0/x", "private"},
		{"https://localhost/x", "loopback name"},
		{"https://a.localhost/x", "loopback name"},
		{"https://hooks.example.com/" + strings.Repeat("a", MaxURLLen), "at most"},
	} {
		err := p.CheckURL(tc.url)
		switch {
		case tc.rule == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.url, err)
		case tc.rule != "" && (err == nil || !strings.Contains(err.Error(), tc.rule) || !errors.Is(err, ErrRefused)):
			t.Errorf("%s: %v, want a refusal naming %q", tc.url, err, tc.rule)
		}
	}
}

func TestClientRefusesPrivateAddressesAtDialTime(t *testing.T) {
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/target", http.StatusFound)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	// "localhost" resolves to the loopback: a name that passed a check
	// earlier and resolves to a private address now is refused when dialled.
	byName := "http://localhost:" + u.Port() + "/"
	ctx := context.Background()
	msg := Message{ID: "msg_1", Body: []byte(`{}`)}
	secret, _ := NewSecret()
	strict := Policy{}.Client(2 * time.Second)
	if _, err := Send(ctx, strict, byName, secret, msg, time.Now()); !errors.Is(err, ErrRefused) {
		t.Fatalf("dialling localhost without an allow-list: %v, want ErrRefused", err)
	}
	if hits != 0 {
		t.Fatalf("the receiver was reached %d times", hits)
	}
	allowed := Policy{AllowHosts: []string{"127.0.0.1"}}.Client(2 * time.Second)
	if status, err := Send(ctx, allowed, srv.URL+"/", secret, msg, time.Now()); err != nil || status != 200 {
		t.Fatalf("allowed host: %d, %v", status, err)
	}
	if status, err := Send(ctx, allowed, srv.URL+"/redirect", secret, msg, time.Now()); err != nil || status != http.StatusFound {
		t.Fatalf("redirect: %d, %v; want the 302 itself", status, err)
	}
	if hits != 2 {
		t.Fatalf("receiver hit %d times, want 2 (the redirect was followed?)", hits)
	}
}
