package signing

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// env is one test's database, with a partner that signs and one that does
// not, and a Verifier on it and on the test's own Redis DB whose clock stands
// still at now.
type env struct {
	db              *pgxpool.Pool
	rdb             *redis.Client
	v               *Verifier
	signer, plain   int64
	secret          string
	now             time.Time
	ts              string // now, as a timestamp header
	reg             *prometheus.Registry
	nonces, signers int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	db, err := store.Open(ctx, testenv.Database(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, rdb: redis.NewClient(opt), reg: prometheus.NewRegistry(), now: time.Unix(1_700_000_000, 0)}
	t.Cleanup(func() { e.rdb.Close() })
	e.ts = strconv.FormatInt(e.now.Unix(), 10)
	e.secret, err = NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	e.signer = e.partner(t, "Signer", e.secret)
	e.plain = e.partner(t, "Plain", "")
	e.v = New(db, e.rdb, e.reg)
	e.v.now = func() time.Time { return e.now }
	return e
}

// partner creates a partner with secret ("" for none) and returns its id.
func (e *env) partner(t *testing.T, name, secret string) int64 {
	t.Helper()
	var id int64
	err := e.db.QueryRow(t.Context(), `INSERT INTO partners (name, signing_secret) VALUES ($1, NULLIF($2, '')) RETURNING id`,
		name, secret).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// headers is a request's headers, read as the gateway reads them.
type headers map[string]string

func (h headers) get(name string) string { return h[name] }

// signed returns the headers of a call signed with secret.
func signed(secret, ts, nonce string, body []byte) headers {
	return headers{HeaderTimestamp: ts, HeaderNonce: nonce, HeaderSignature: Sign(secret, ts, nonce, body)}
}

// want checks the answer to a call: nil, or the error's status, code and field.
func want(t *testing.T, got *protocol.Error, status int, code, field string) {
	t.Helper()
	switch {
	case status == 0 && got != nil:
		t.Fatalf("got %d %s (%s: %s), want the call accepted", got.Status, got.Code, got.Field, got.Message)
	case status == 0:
	case got == nil:
		t.Fatalf("call accepted, want %d %s", status, code)
	case got.Status != status || got.Code != code || got.Field != field:
		t.Fatalf("got %d %s field %q (%s), want %d %s field %q", got.Status, got.Code, got.Field, got.Message, status, code, field)
	}
}

var body = []byte(`{"method":"getCustomer","params":{"id":"ABC"}}`)

// TestSignKnownAnswer pins the string to sign to the one the package doc's
// shell example produces with openssl for these inputs.
func TestSignKnownAnswer(t *testing.T) {
	t.Parallel()
	got := Sign("oosig_testvector-not-a-real-secret-0123456789", "1700000000", "n-1", body)
	if want := "v1=cd78ff33f31f9badc36eea0ea4fd882236d4dd737ee7cd2a0c0bdd81077c1f62"; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

// TestNewSecret checks the secret's size (256 bits) and that two differ.
func TestNewSecret(t *testing.T) {
	t.Parallel()
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret()
	if !strings.HasPrefix(a, secretPrefix) || len(a) != len(secretPrefix)+43 || a == b {
		t.Fatalf("NewSecret = %q, %q", a, b)
	}
}

// TestMalformedOrMissing lists the calls of a signing partner that are
// refused before any signature is computed, each naming the header at fault.
func TestMalformedOrMissing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := signed(e.secret, e.ts, "n", body)
	with := func(name, value string) headers {
		h := headers{}
		for k, v := range good {
			h[k] = v
		}
		h[name] = value
		return h
	}
	for _, tc := range []struct {
		name  string
		h     headers
		field string
	}{
		{"no headers", headers{}, HeaderTimestamp},
		{"no timestamp", with(HeaderTimestamp, ""), HeaderTimestamp},
		{"no nonce", with(HeaderNonce, ""), HeaderNonce},
		{"no signature", with(HeaderSignature, ""), HeaderSignature},
		{"timestamp with a sign", with(HeaderTimestamp, "+"+e.ts), HeaderTimestamp},
		{"negative timestamp", with(HeaderTimestamp, "-1"), HeaderTimestamp},
		{"timestamp in milliseconds", with(HeaderTimestamp, e.ts+"000"), HeaderTimestamp},
		{"fractional timestamp", with(HeaderTimestamp, e.ts+".5"), HeaderTimestamp},
		{"nonce with a space", with(HeaderNonce, "a b"), HeaderNonce},
		{"nonce with a control", with(HeaderNonce, "a\tb"), HeaderNonce},
		{"nonce not ASCII", with(HeaderNonce, "é"), HeaderNonce},
		{"nonce of 65", with(HeaderNonce, strings.Repeat("n", 65)), HeaderNonce},
		{"signature without version", with(HeaderSignature, strings.TrimPrefix(good[HeaderSignature], "v1=")), HeaderSignature},
		{"other version", with(HeaderSignature, "v2="+strings.TrimPrefix(good[HeaderSignature], "v1=")), HeaderSignature},
		{"short signature", with(HeaderSignature, good[HeaderSignature][:66]), HeaderSignature},
		{"not hex", with(HeaderSignature, "v1="+strings.Repeat("zz", 32)), HeaderSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want(t, e.v.Verify(t.Context(), e.signer, tc.h.get, body), http.StatusUnauthorized, protocol.CodeBadSignature, tc.field)
		})
	}
	if n := e.rdb.DBSize(t.Context()).Val(); n != 0 {
		t.Fatalf("%d nonces recorded for refused calls", n)
	}
	if got := testutil.ToFloat64(e.v.metrics.checks.WithLabelValues(outcomeBadSignature)); got != 16 {
		t.Fatalf("bad_signature count %v, want 16", got)
	}
}

// TestVerify follows the calls of a signing partner through the signature,
// the time window and the nonce, and those of a partner that does not sign.
func TestVerify(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	unix := e.now.Unix()
	at := func(d int64) string { return strconv.FormatInt(unix+d, 10) }
	other, _ := NewSecret()
	for _, step := range []struct {
		name    string
		partner int64
		h       headers
		body    []byte
		status  int
		code    string
		field   string
	}{
		{"plain partner, unsigned", e.plain, headers{}, body, 0, "", ""},
		{"plain partner, garbage signature", e.plain, headers{HeaderSignature: "x"}, body, 0, "", ""},
		{"good signature", e.signer, signed(e.secret, e.ts, "n1", body), body, 0, "", ""},
		{"same nonce again", e.signer, signed(e.secret, e.ts, "n1", body), body,
			http.StatusUnauthorized, protocol.CodeReplayedRequest, HeaderNonce},
		{"same nonce, other timestamp", e.signer, signed(e.secret, at(-30), "n1", body), body,
			http.StatusUnauthorized, protocol.CodeReplayedRequest, HeaderNonce},
		{"same nonce, other partner's", e.plain, signed(e.secret, e.ts, "n1", body), body, 0, "", ""},
		{"other secret, fresh nonce", e.signer, signed(other, e.ts, "n2", body), body,
			http.StatusUnauthorized, protocol.CodeBadSignature, HeaderSignature},
		{"the nonce a bad signature used is still free", e.signer, signed(e.secret, e.ts, "n2", body), body, 0, "", ""},
		{"body changed after signing", e.signer, signed(e.secret, e.ts, "n3", body), []byte(strings.Replace(string(body), "ABC", "ABD", 1)),
			http.StatusUnauthorized, protocol.CodeBadSignature, HeaderSignature},
		{"timestamp changed after signing", e.signer, set(signed(e.secret, e.ts, "n4", body), HeaderTimestamp, at(1)), body,
			http.StatusUnauthorized, protocol.CodeBadSignature, HeaderSignature},
		{"61 s old", e.signer, signed(e.secret, at(-61), "n5", body), body,
			http.StatusUnauthorized, protocol.CodeBadSignature, HeaderTimestamp},
		{"61 s ahead", e.signer, signed(e.secret, at(61), "n6", body), body,
			http.StatusUnauthorized, protocol.CodeBadSignature, HeaderTimestamp},
		{"60 s old", e.signer, signed(e.secret, at(-60), "n5", body), body, 0, "", ""},
		{"60 s ahead", e.signer, signed(e.secret, at(60), "n6", body), body, 0, "", ""},
		{"empty body", e.signer, signed(e.secret, e.ts, "n7", nil), nil, 0, "", ""},
		{"uppercase hex", e.signer, upper(signed(e.secret, e.ts, "n8", body)), body, 0, "", ""},
	} {
		got := e.v.Verify(ctx, step.partner, step.h.get, step.body)
		t.Run(step.name, func(t *testing.T) { want(t, got, step.status, step.code, step.field) })
	}
	for outcome, n := range map[string]float64{outcomeOK: 6, outcomeReplayed: 2, outcomeBadSignature: 3, outcomeStale: 2, outcomeUnavailable: 0} {
		if got := testutil.ToFloat64(e.v.metrics.checks.WithLabelValues(outcome)); got != n {
			t.Errorf("outcome %s counted %v, want %v", outcome, got, n)
		}
	}
	for _, nonce := range []string{"n1", "n5", "n6"} {
		if ttl := e.rdb.PTTL(ctx, nonceKey(e.signer, nonce)).Val(); ttl <= 0 || ttl > 2*Window+clockMargin+time.Second {
			t.Errorf("nonce %s kept %v, want an expiry within the window and its margin", nonce, ttl)
		}
	}
}

// TestNonceTTL checks that a nonce outlives the last moment its timestamp is
// accepted, plus the margin for other gateways' clocks, and not much more.
func TestNonceTTL(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 250e6) // a quarter second past the second
	for _, tc := range []struct {
		skew int64 // timestamp minus now, in whole seconds
		want time.Duration
	}{
		{0, 61*time.Second - 250*time.Millisecond + clockMargin},
		{-60, 1*time.Second - 250*time.Millisecond + clockMargin},
		{60, 121*time.Second - 250*time.Millisecond + clockMargin},
	} {
		if got := nonceTTL(now.Unix()+tc.skew, now); got != tc.want {
			t.Errorf("nonceTTL(now%+d s) = %v, want %v", tc.skew, got, tc.want)
		}
	}
}

func set(h headers, name, value string) headers {
	h[name] = value
	return h
}

func upper(h headers) headers {
	h[HeaderSignature] = "v1=" + strings.ToUpper(strings.TrimPrefix(h[HeaderSignature], "v1="))
	return h
}

// TestSecretChanges checks that a Verifier reads a secret set, replaced or
// removed after it started, once its cache entry is gone.
func TestSecretChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	call := func(secret, nonce string) *protocol.Error {
		return e.v.Verify(ctx, e.plain, signed(secret, e.ts, nonce, body).get, body)
	}
	want(t, e.v.Verify(ctx, e.plain, headers{}.get, body), 0, "", "")
	fresh, _ := NewSecret()
	if _, err := e.db.Exec(ctx, `UPDATE partners SET signing_secret = $1 WHERE id = $2`, fresh, e.plain); err != nil {
		t.Fatal(err)
	}
	// Within CacheTTL the gateway may still go by what it read; a new
	// entry is what a gateway has once the TTL has passed.
	e.v.secrets.cache.Remove(e.plain)
	want(t, e.v.Verify(ctx, e.plain, headers{}.get, body), http.StatusUnauthorized, protocol.CodeBadSignature, HeaderTimestamp)
	want(t, call(fresh, "a"), 0, "", "")
	if _, err := e.db.Exec(ctx, `UPDATE partners SET signing_secret = NULL WHERE id = $1`, e.plain); err != nil {
		t.Fatal(err)
	}
	e.v.secrets.cache.Remove(e.plain)
	want(t, e.v.Verify(ctx, e.plain, headers{}.get, body), 0, "", "")
	// An unknown partner has no secret to check against.
	want(t, e.v.Verify(ctx, 1<<40, headers{}.get, body), 0, "", "")
}

// TestUnavailable checks that a call is refused 503, not accepted unchecked,
// when the database cannot tell whether the partner signs or Redis cannot
// record the nonce.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	down := redis.NewClient(&redis.Options{Addr: testenv.FreeAddr(t), MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { down.Close() })
	v := New(e.db, down, prometheus.NewRegistry())
	v.now = e.v.now
	want(t, v.Verify(ctx, e.signer, signed(e.secret, e.ts, "n", body).get, body), http.StatusServiceUnavailable, protocol.CodeUnavailable, "")
	// A bad signature is still a 401: it is known before Redis is asked.
	want(t, v.Verify(ctx, e.signer, headers{}.get, body), http.StatusUnauthorized, protocol.CodeBadSignature, HeaderTimestamp)
	// The partner that does not sign does not need Redis.
	want(t, v.Verify(ctx, e.plain, headers{}.get, body), 0, "", "")

	closed, err := store.Open(ctx, testenv.Database(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	v = New(closed, e.rdb, prometheus.NewRegistry())
	want(t, v.Verify(ctx, e.plain, headers{}.get, body), http.StatusServiceUnavailable, protocol.CodeUnavailable, "")
	if got := testutil.ToFloat64(v.metrics.checks.WithLabelValues(outcomeUnavailable)); got != 1 {
		t.Fatalf("unavailable counted %v, want 1", got)
	}
}

// TestNilVerifier checks that an API built without signing checks nothing.
func TestNilVerifier(t *testing.T) {
	t.Parallel()
	var v *Verifier
	want(t, v.Verify(context.Background(), 1, headers{}.get, body), 0, "", "")
}
