package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every signing secret, as the Standard Webhooks
// specification writes them: whsec_ and the base64 of the key.
const SecretPrefix = "whsec_"

// secretBytes is the length of a new signing key: 256 bits.
const secretBytes = 32

// The headers of a delivery (Standard Webhooks).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// ErrBadSecret reports a secret that is not whsec_ and base64.
var ErrBadSecret = errors.New("webhook secret: want whsec_ and the base64 of the key")

// NewSecret returns a new random signing secret.
func NewSecret() (string, error) {
	var raw [secretBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(raw[:]), nil
}

// secretKey is the HMAC key of a secret: the base64-decoded part after the
// prefix.
func secretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(key) == 0 || !strings.HasPrefix(secret, SecretPrefix) {
		return nil, ErrBadSecret
	}
	return key, nil
}

// Sign returns the webhook-signature header of body sent as message id at
// ts: "v1," and the base64 HMAC-SHA256 of "id.timestamp.body".
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}
