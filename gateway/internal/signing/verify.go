package signing

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// Headers of a signed call.
const (
	HeaderTimestamp = "X-Signature-Timestamp"
	HeaderNonce     = "X-Signature-Nonce"
	HeaderSignature = "X-Signature"
)

// Window is how far a call's timestamp may be from the gateway's clock, either
// way. A nonce is remembered until its timestamp leaves the window plus
// clockMargin, so that a gateway whose clock is up to that much behind the
// one that recorded it still finds it.
const (
	Window      = 60 * time.Second
	clockMargin = 10 * time.Second
)

// Limits of the headers' formats. Twelve digits of Unix seconds reach far
// past any real clock and keep the arithmetic clear of overflow.
const (
	maxTimestampDigits = 12
	maxNonce           = 64
	sigPrefix          = "v1="
)

// Verifier checks the signatures of the calls of partners that sign.
type Verifier struct {
	secrets *secrets
	rdb     redis.Cmdable
	metrics *metrics
	now     func() time.Time
}

// New returns a Verifier that reads partners' secrets from db, through a
// cache, and records nonces in rdb, which every gateway shares.
func New(db *pgxpool.Pool, rdb redis.Cmdable, reg prometheus.Registerer) *Verifier {
	return &Verifier{secrets: newSecrets(db), rdb: rdb, metrics: newMetrics(reg), now: time.Now}
}

// Sign returns the X-Signature value of a call: "v1=" and the lowercase hex of
// HMAC-SHA256(secret, timestamp + "\n" + nonce + "\n" + body).
func Sign(secret, timestamp, nonce string, body []byte) string {
	return sigPrefix + hex.EncodeToString(mac(secret, timestamp, nonce, body))
}

func mac(secret, timestamp, nonce string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte{'\n'})
	m.Write([]byte(nonce))
	m.Write([]byte{'\n'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks the call of partner whose headers header reads (empty when
// absent) and whose body, as sent on the wire, is body. It returns nil when
// the partner does not sign or the call is correctly signed and new, and
// otherwise the error to answer with: 401 bad_signature or replayed_request,
// or 503 unavailable when the database or Redis cannot tell. A nil Verifier
// checks nothing, for API tests that are not about signing.
func (v *Verifier) Verify(ctx context.Context, partner int64, header func(string) string, body []byte) *protocol.Error {
	if v == nil {
		return nil
	}
	secret, err := v.secrets.get(ctx, partner)
	if err != nil {
		v.metrics.checks.WithLabelValues(outcomeUnavailable).Inc()
		return unavailable("the partner store is unreachable; nothing was done, retry later")
	}
	if secret == "" {
		return nil
	}
	outcome, e := v.check(ctx, partner, secret, header, body)
	v.metrics.checks.WithLabelValues(outcome).Inc()
	return e
}

// check verifies a call of a partner that signs and returns its outcome.
func (v *Verifier) check(ctx context.Context, partner int64, secret string, header func(string) string, body []byte) (string, *protocol.Error) {
	sc, e := parse(header)
	if e != nil {
		return outcomeBadSignature, e
	}
	if !hmac.Equal(sc.mac, mac(secret, sc.timestamp, sc.nonce, body)) {
		return outcomeBadSignature, badSignature(HeaderSignature,
			`X-Signature does not match HMAC-SHA256(secret, timestamp + "\n" + nonce + "\n" + body) of this call's body as sent`)
	}
	now := v.now()
	if skew := now.Unix() - sc.unix; skew > int64(Window/time.Second) || -skew > int64(Window/time.Second) {
		return outcomeStale, badSignature(HeaderTimestamp, fmt.Sprintf(
			"X-Signature-Timestamp is %d s away from the gateway's clock; it must be within %d s", abs(skew), int64(Window/time.Second)))
	}
	fresh, err := v.rdb.SetNX(ctx, nonceKey(partner, sc.nonce), 1, nonceTTL(sc.unix, now)).Result()
	if err != nil {
		return outcomeUnavailable, unavailable("the nonce store is unreachable; nothing was done, retry later")
	}
	if !fresh {
		return outcomeReplayed, protocol.NewError(http.StatusUnauthorized, protocol.CodeReplayedRequest, HeaderNonce,
			"this X-Signature-Nonce was already used in the last 60 s; sign every call, retries included, with a new nonce")
	}
	return outcomeOK, nil
}

// signedCall is what the signature headers of a call say.
type signedCall struct {
	timestamp, nonce string
	unix             int64
	mac              []byte
}

// parse reads and checks the format of the three headers.
func parse(header func(string) string) (signedCall, *protocol.Error) {
	sc := signedCall{timestamp: header(HeaderTimestamp), nonce: header(HeaderNonce)}
	sig := header(HeaderSignature)
	if sc.timestamp == "" || sc.nonce == "" || sig == "" {
		return sc, badSignature(missingHeader(sc.timestamp, sc.nonce),
			"this partner signs its calls: send X-Signature-Timestamp, X-Signature-Nonce and X-Signature")
	}
	if len(sc.timestamp) > maxTimestampDigits || !digits(sc.timestamp) {
		return sc, badSignature(HeaderTimestamp, "X-Signature-Timestamp must be the time of signing in Unix seconds, decimal digits only")
	}
	sc.unix, _ = strconv.ParseInt(sc.timestamp, 10, 64) // cannot fail: at most 12 digits
	if len(sc.nonce) > maxNonce || !visible(sc.nonce) {
		return sc, badSignature(HeaderNonce, "X-Signature-Nonce must be 1 to 64 visible ASCII characters (no spaces)")
	}
	hexSig, ok := strings.CutPrefix(sig, sigPrefix)
	var err error
	if ok && len(hexSig) == 2*sha256.Size {
		sc.mac, err = hex.DecodeString(hexSig)
	}
	if !ok || len(hexSig) != 2*sha256.Size || err != nil {
		return sc, badSignature(HeaderSignature, "X-Signature must be v1= followed by the 64 lowercase hex digits of the HMAC-SHA256")
	}
	return sc, nil
}

// missingHeader names the first signature header the call lacks.
func missingHeader(timestamp, nonce string) string {
	switch {
	case timestamp == "":
		return HeaderTimestamp
	case nonce == "":
		return HeaderNonce
	}
	return HeaderSignature
}

// nonceTTL is how long a nonce signed at unix must be remembered from now on.
// The timestamp is accepted while now.Unix() is at most unix+Window, that is
// until unix+Window+1 s; clockMargin covers the gateways whose clocks are
// behind this one.
func nonceTTL(unix int64, now time.Time) time.Duration {
	return time.Unix(unix+1, 0).Add(Window + clockMargin).Sub(now)
}

// nonceKey is the Redis key of a nonce: scoped to the partner, so that two
// partners may pick the same nonce.
func nonceKey(partner int64, nonce string) string {
	return "oo:nonce:" + strconv.FormatInt(partner, 10) + ":" + nonce
}

func badSignature(field, msg string) *protocol.Error {
	return protocol.NewError(http.StatusUnauthorized, protocol.CodeBadSignature, field, msg)
}

func unavailable(msg string) *protocol.Error {
	return protocol.NewError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "", msg)
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func visible(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
