// Package auth holds partners' API keys: created random (256 bits), shown once,
// stored only as a SHA-256 hash, revocable; and the in-process cache the gateway
// checks each call against, so that a revoked key stops working within its TTL.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/gateway/internal/signing"
	"github.com/oneoffice/provisioner/shared/store"
)

// keyPrefix marks OneOffice keys, so that a leaked one is recognizable.
const keyPrefix = "oo_"

// Hash is what the database keeps of a key.
func Hash(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// CreateKey creates the partner named name if it does not exist, and a new key
// for it. The key is returned once and never stored.
func CreateKey(ctx context.Context, db *pgxpool.Pool, name string) (string, error) {
	return createKey(ctx, db, name, nil)
}

// CreateSigningKey is CreateKey that also gives the partner a new signing
// secret, replacing any it had, in the same statement: from then on every
// call of the partner must be signed with it (package signing). Both are
// returned once.
func CreateSigningKey(ctx context.Context, db *pgxpool.Pool, name string) (key, secret string, err error) {
	if secret, err = signing.NewSecret(); err != nil {
		return "", "", err
	}
	key, err = createKey(ctx, db, name, &secret)
	return key, secret, err
}

// createKey creates the partner if needed and a key; a nil secret leaves the
// partner's signing secret as it is.
func createKey(ctx context.Context, db *pgxpool.Pool, name string, secret *string) (string, error) {
	if name == "" || len(name) > 200 {
		return "", errors.New("--partner must be a name of 1 to 200 characters")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	key := keyPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	h := Hash(key)
	_, err := db.Exec(ctx, `WITH p AS (
			INSERT INTO partners (name, signing_secret) VALUES ($1, $3)
			ON CONFLICT (name) DO UPDATE SET signing_secret = COALESCE(excluded.signing_secret, partners.signing_secret)
			RETURNING id)
		INSERT INTO api_keys (partner_id, key_hash) SELECT id, $2 FROM p`, name, h[:], secret)
	if err != nil {
		return "", fmt.Errorf("create key: %w", err)
	}
	return key, nil
}

// RevokeKey revokes key; store.ErrNotFound if no live key matches.
func RevokeKey(ctx context.Context, db *pgxpool.Pool, key string) error {
	h := Hash(key)
	tag, err := db.Exec(ctx, `UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1 AND revoked_at IS NULL`, h[:])
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("revoke key: %w", store.ErrNotFound)
	}
	return nil
}

// LookupKey returns the partner of a live key hash, or store.ErrNotFound.
func LookupKey(ctx context.Context, db *pgxpool.Pool, h [32]byte) (int64, error) {
	var partner int64
	err := db.QueryRow(ctx, `SELECT partner_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL`, h[:]).Scan(&partner)
	return partner, store.NoRows(err)
}
