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

	"github.com/oneoffice/provisioner/shared/store"
)

// keyPrefix marks OneOffice keys, so that a leaked one is recognizable.
const keyPrefix = "oo_"

// Hash is what the database keeps of a key.
func Hash(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// CreateKey creates the partner named name if it does not exist, and a new key
// for it. The key is returned once and never stored.
func CreateKey(ctx context.Context, db *pgxpool.Pool, name string) (string, error) {
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
			INSERT INTO partners (name) VALUES ($1)
			ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id)
		INSERT INTO api_keys (partner_id, key_hash) SELECT id, $2 FROM p`, name, h[:])
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
