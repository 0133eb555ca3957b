// Package signing verifies the optional request signatures of SPEC section 6.
//
// A partner signs when it has a signing secret (`gateway keys create --partner
// NAME --signing` issues one); from then on every call it makes must be signed,
// and a partner without a secret is not affected at all, whatever headers it
// sends. A signed call carries three headers:
//
//	X-Signature-Timestamp  the time of signing, in Unix seconds (decimal digits)
//	X-Signature-Nonce      1 to 64 visible ASCII characters (0x21-0x7E), new for every call
//	X-Signature            "v1=" + lowercase hex of HMAC-SHA256(secret, timestamp + "\n" + nonce + "\n" + body)
//
// The HMAC key is the secret exactly as printed (its ASCII bytes, prefix
// included), and body is the request body exactly as sent on the wire: when a
// Content-Encoding is used, the compressed bytes are signed, so a client signs
// what it sends and the gateway checks the signature before it inflates
// anything. Spaces are not allowed in a nonce because intermediaries may trim
// them from header values, which would break a signature silently.
//
// The gateway checks, in this order, and answers 401 on the first failure:
//  1. the three headers are present and well formed, else bad_signature;
//  2. the signature matches (compared in constant time), else bad_signature;
//  3. the timestamp is within Window (60 s) of the gateway's clock, in either
//     direction, else bad_signature naming the timestamp (outcome "stale");
//  4. the nonce has not been used by this partner in that window, else
//     replayed_request.
//
// The signature is checked before the nonce is recorded, so calls with a bad
// signature cannot use up a partner's nonces. Nonces are recorded in Redis
// (SET NX, keyed by partner and nonce) until the timestamp they were signed
// with leaves the window, plus a margin for clocks between gateways, so every
// gateway refuses a nonce any of them accepted. If Redis cannot be reached
// the call is answered 503 unavailable rather than accepted unchecked.
//
// Only the timestamp, the nonce and the body are signed. The other headers
// (Idempotency-Key, X-Request-Id) are not: signing proves that the body came
// from the holder of the secret and was not replayed, and TLS protects the
// rest of the request in transit. A retry is a new call and needs a new
// nonce and a new signature; its Idempotency-Key makes it safe to repeat.
//
// Secrets are kept as issued in partners.signing_secret, since an HMAC can
// only be verified with the secret in clear (API keys, by contrast, are kept
// only as hashes). Someone who can read the database can therefore sign as
// any partner, but still needs that partner's API key, which the database
// does not hold. The gateway caches each partner's secret, or its absence,
// for CacheTTL, so a new or replaced secret takes effect within 5 s on every
// gateway. Issuing a secret again for the same partner replaces the old one,
// which stops working within that time.
//
// A signed call from a shell, with curl and openssl:
//
//	KEY=oo_...             # the API key
//	SECRET=oosig_...       # the signing secret
//	BODY='{"method":"getCustomer","params":{"id":"ABC"}}'
//	TS=$(date +%s)
//	NONCE=$(openssl rand -hex 16)
//	SIG=$(printf '%s\n%s\n%s' "$TS" "$NONCE" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
//	curl -sS -X POST http://127.0.0.1:8080/ -H "x-api-key: $KEY" \
//	  -H "X-Signature-Timestamp: $TS" -H "X-Signature-Nonce: $NONCE" \
//	  -H "X-Signature: v1=$SIG" -H 'Content-Type: application/json' --data-binary "$BODY"
//
// (--data-binary, not --data, so that curl sends the body byte for byte.)
package signing
