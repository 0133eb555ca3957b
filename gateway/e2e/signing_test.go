package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sign returns the signature headers of a call, computed here from the
// documented rule rather than with the gateway's code: "v1=" + hex of
// HMAC-SHA256(secret, timestamp + "\n" + nonce + "\n" + body).
func sign(secret string, ts int64, nonce, body string) []string {
	t := strconv.FormatInt(ts, 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(t + "\n" + nonce + "\n" + body))
	return []string{"X-Signature-Timestamp", t, "X-Signature-Nonce", nonce,
		"X-Signature", "v1=" + hex.EncodeToString(mac.Sum(nil))}
}

// TestSigningPartnerRequiresSignatures checks SPEC section 6's optional
// signing: a partner with a secret has every call checked, with nothing
// provisioned for a refused one, and a partner without one is unaffected.
func TestSigningPartnerRequiresSignatures(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	out := strings.Split(s.admin("keys", "create", "--partner", "Signer", "--signing"), "\n")
	if len(out) != 2 || !strings.HasPrefix(out[0], "oo_") || !strings.HasPrefix(out[1], "oosig_") || len(out[1]) < 6+43 {
		t.Fatalf("keys create --signing printed %q, want the key and the secret on two lines", out)
	}
	key, secret := out[0], out[1]
	gw := s.StartGateway()
	s.StartWorker()

	customer := func(id string) string {
		return envelope("createCustomer", m{"id": id, "name": "Signed " + id, "admin": m{"email": "a@example.com"}})
	}
	refused := func(what string, r Response, code string) {
		t.Helper()
		if r.Status != 401 || r.ErrorCode(t) != code {
			t.Fatalf("%s: %d %s, want 401 %s", what, r.Status, r.Body, code)
		}
	}
	refused("unsigned", s.Do(key, customer("U1")), "bad_signature")
	refused("signed with another secret", s.Do(key, customer("U2"), sign("oosig_"+strings.Repeat("x", 43), time.Now().Unix(), "w1", customer("U2"))...), "bad_signature")

	good := sign(secret, time.Now().Unix(), "n1", customer("S1"))
	if r := s.Do(key, customer("S1"), good...); r.Status != 200 {
		t.Fatalf("signed call: %d %s", r.Status, r.Body)
	}
	refused("the same call again", s.Do(key, customer("S1"), good...), "replayed_request")
	refused("a new call with a used nonce", s.Do(key, customer("U3"), sign(secret, time.Now().Unix(), "n1", customer("U3"))...), "replayed_request")
	refused("61 s old", s.Do(key, customer("U4"), sign(secret, time.Now().Unix()-61, "n2", customer("U4"))...), "bad_signature")
	refused("body changed after signing", s.Do(key, customer("U5"), sign(secret, time.Now().Unix(), "n3", customer("U6"))...), "bad_signature")
	// The nonce of a refused call was not used up.
	if r := s.Do(key, customer("S2"), sign(secret, time.Now().Unix(), "n3", customer("S2"))...); r.Status != 200 {
		t.Fatalf("signed call with the nonce of a refused one: %d %s", r.Status, r.Body)
	}

	// The bytes on the wire are signed: a gzip body is signed compressed.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(customer("S3")))
	zw.Close()
	if r := s.Do(key, gz.String(), append(sign(secret, time.Now().Unix(), "n4", gz.String()), "Content-Encoding", "gzip")...); r.Status != 200 {
		t.Fatalf("signed gzip call: %d %s", r.Status, r.Body)
	}
	refused("gzip body signed inflated", s.Do(key, gz.String(), append(sign(secret, time.Now().Unix(), "n5", customer("S3")), "Content-Encoding", "gzip")...), "bad_signature")

	// A partner without a secret is unaffected, signature headers or not.
	if r := s.Do(s.Key, customer("P1")); r.Status != 200 {
		t.Fatalf("unsigned call of a partner that does not sign: %d %s", r.Status, r.Body)
	}
	if r := s.Do(s.Key, customer("P2"), "X-Signature", "v1=nonsense"); r.Status != 200 {
		t.Fatalf("call with a bad signature of a partner that does not sign: %d %s", r.Status, r.Body)
	}

	// Only the accepted calls provisioned anything.
	if n := s.Count(`SELECT count(*) FROM tenants t JOIN partners p ON p.id = t.partner_id WHERE p.name = 'Signer' AND t.remote_id LIKE 'U%'`); n != 0 {
		t.Fatalf("%d tenants provisioned by refused calls", n)
	}
	if n := s.Count(`SELECT count(*) FROM tenants t JOIN partners p ON p.id = t.partner_id WHERE p.name = 'Signer'`); n != 3 {
		t.Fatalf("signing partner has %d tenants, want 3 (S1, S2, S3)", n)
	}

	mfs := scrape(t, gw)
	for outcome, want := range map[string]float64{"ok": 3, "bad_signature": 4, "replayed": 2, "stale": 1} {
		if got := value(mfs, "oneoffice_signed_requests_total", map[string]string{"outcome": outcome}); got != want {
			t.Errorf("oneoffice_signed_requests_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

// TestSigningSecretReplaced checks that issuing a secret again for a partner
// that signs replaces the old one, and that a new key of the partner is
// bound by the same secret.
func TestSigningSecretReplaced(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	first := strings.Split(s.admin("keys", "create", "--partner", "Signer", "--signing"), "\n")
	s.StartGateway()
	s.StartWorker()
	body := envelope("getCustomer", m{"id": "none"})
	if r := s.Do(first[0], body, sign(first[1], time.Now().Unix(), "a", body)...); r.Status != 404 {
		t.Fatalf("signed call with the first secret: %d %s, want 404 customer_not_found", r.Status, r.Body)
	}
	// The gateway's cache holds the first secret for up to 4 s: the second is
	// what a call must be signed with from the moment it is seen.
	second := strings.Split(s.admin("keys", "create", "--partner", "Signer", "--signing"), "\n")
	if len(second) != 2 || second[1] == first[1] || second[0] == first[0] {
		t.Fatalf("second keys create --signing printed %q", second)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		nonce := "b" + strconv.Itoa(i)
		r := s.Do(second[0], body, sign(second[1], time.Now().Unix(), nonce, body)...)
		if r.Status == 404 {
			break
		}
		if r.Status != 401 || time.Now().After(deadline) {
			t.Fatalf("signed call with the second secret: %d %s", r.Status, r.Body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := s.Do(first[0], body, sign(first[1], time.Now().Unix(), "c", body)...); r.Status != 401 || r.ErrorCode(t) != "bad_signature" {
		t.Fatalf("first key signed with the replaced secret: %d %s, want 401 bad_signature", r.Status, r.Body)
	}
	if r := s.Do(first[0], body, sign(second[1], time.Now().Unix(), "d", body)...); r.Status != 404 {
		t.Fatalf("first key signed with the new secret: %d %s, want 404", r.Status, r.Body)
	}
}
