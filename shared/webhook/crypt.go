package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strconv"
)

// KeyBytes is the length of the key that encrypts the signing secrets at
// rest (AES-256).
const KeyBytes = 32

// ErrNoKey reports that this process was given no WEBHOOK_SECRET_KEY, so it
// can neither store nor read a signing secret.
var ErrNoKey = errors.New("WEBHOOK_SECRET_KEY is not set: webhooks are off in this process")

// Sealer encrypts the signing secrets with AES-256-GCM under the key of the
// configuration. A sealed secret is bound to its partner (the partner's id
// is the additional data), so a row copied onto another partner does not
// open.
type Sealer struct{ aead cipher.AEAD }

// ParseKey decodes a WEBHOOK_SECRET_KEY: the standard base64 of 32 bytes.
func ParseKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(key) != KeyBytes {
		return nil, errors.New("want the base64 of 32 random bytes (openssl rand -base64 32)")
	}
	return key, nil
}

// NewSealer returns the sealer of key, a WEBHOOK_SECRET_KEY; ErrNoKey when
// it is empty.
func NewSealer(key string) (*Sealer, error) {
	if key == "" {
		return nil, ErrNoKey
	}
	raw, err := ParseKey(key)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts partner's secret: a random nonce followed by the ciphertext.
func (s *Sealer) Seal(partner int64, secret string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(secret)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, []byte(secret), aad(partner)), nil
}

// Open decrypts what Seal returned for partner.
func (s *Sealer) Open(partner int64, sealed []byte) (string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("sealed webhook secret too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], aad(partner))
	if err != nil {
		return "", errors.New("the webhook secret does not open under WEBHOOK_SECRET_KEY (another key?)")
	}
	return string(plain), nil
}

func aad(partner int64) []byte {
	return []byte("oneoffice-webhook-secret:" + strconv.FormatInt(partner, 10))
}
