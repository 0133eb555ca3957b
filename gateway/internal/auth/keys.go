// Package auth holds partners' API keys: created random (256 bits), shown once,
// stored only as a SHA-256 hash, revocable, rollable (the old key expires at a
// chosen time), live or test (sandbox), full or read-only; and the in-process
// cache the gateway checks each call against, so that a revoked or expired key
// stops working within its TTL. Every change to keys is recorded in the admin
// audit trail (shared/audit) in the transaction of the change.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/gateway/internal/signing"
	"github.com/oneoffice/provisioner/shared/audit"
	"github.com/oneoffice/provisioner/shared/store"
)

// Key prefixes mark OneOffice keys, so that a leaked one is recognizable, and
// a test key at a glance.
const (
	keyPrefix  = "oo_"
	testPrefix = "oo_test_"
	// shown is how many characters of a key's random part its prefix shows.
	shown = 6
)

// Hash is what the database keeps of a key.
func Hash(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// Key is what the gateway knows of a live key.
type Key struct {
	ID       int64
	Partner  int64 // the partner the key acts as: for a test key, the test partner
	Live     bool  // false: a test (sandbox) key
	ReadOnly bool
	Expires  time.Time // zero: never
	Prefix   string
}

// Prefix is what operators see of key: its kind and a few characters.
func Prefix(key string) string {
	p := keyPrefix
	if strings.HasPrefix(key, testPrefix) {
		p = testPrefix
	}
	return key[:min(len(key), len(p)+shown)]
}

// KeyOptions are those of a new key.
type KeyOptions struct {
	Partner  string // the live partner's name; made if it does not exist
	Test     bool   // a sandbox key, of the partner's test partner (made if needed)
	ReadOnly bool
	Signing  bool   // also issue the partner's signing secret, replacing any
	Actor    string // who asks, for the audit trail
}

// CreateKey creates the partner named name if it does not exist, and a new key
// for it. The key is returned once and never stored.
func CreateKey(ctx context.Context, db *pgxpool.Pool, name string) (string, error) {
	key, _, err := Create(ctx, db, KeyOptions{Partner: name, Actor: audit.OSUser()})
	return key, err
}

// Create makes a key as o says; secret is the new signing secret with
// o.Signing, else "".
func Create(ctx context.Context, db *pgxpool.Pool, o KeyOptions) (key, secret string, err error) {
	if o.Partner == "" || len(o.Partner) > 200 {
		return "", "", errors.New("--partner must be a name of 1 to 200 characters")
	}
	if o.Signing {
		if secret, err = signing.NewSecret(); err != nil {
			return "", "", err
		}
	}
	if key, err = newKey(o.Test); err != nil {
		return "", "", err
	}
	err = store.WithTx(ctx, db, func(tx pgx.Tx) error {
		partner, err := EnsurePartner(ctx, tx, o.Partner, o.Test)
		if err != nil {
			return err
		}
		if secret != "" {
			if _, err := tx.Exec(ctx, `UPDATE partners SET signing_secret = $2 WHERE id = $1`, partner, secret); err != nil {
				return err
			}
		}
		if err := insertKey(ctx, tx, partner, key, o.ReadOnly); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: o.Actor, Action: "keys create", Partner: partner,
			Target: Prefix(key), Detail: describe(o.Test, o.ReadOnly, o.Signing)})
	})
	if err != nil {
		return "", "", fmt.Errorf("create key: %w", err)
	}
	return key, secret, nil
}

func describe(test, readOnly, signing bool) string {
	d := "live"
	if test {
		d = "test"
	}
	if readOnly {
		d += ", read-only"
	}
	if signing {
		d += ", new signing secret"
	}
	return d
}

func newKey(test bool) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	p := keyPrefix
	if test {
		p = testPrefix
	}
	return p + base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

func insertKey(ctx context.Context, tx pgx.Tx, partner int64, key string, readOnly bool) error {
	h := Hash(key)
	_, err := tx.Exec(ctx, `INSERT INTO api_keys (partner_id, key_hash, prefix, read_only) VALUES ($1, $2, $3, $4)`,
		partner, h[:], Prefix(key), readOnly)
	return err
}

// EnsurePartner returns the id of the live partner called name, made if it
// does not exist, or with test that of its test partner, made with it.
func EnsurePartner(ctx context.Context, tx pgx.Tx, name string, test bool) (int64, error) {
	var live int64
	err := tx.QueryRow(ctx, `INSERT INTO partners (name) VALUES ($1)
		ON CONFLICT (name) WHERE live_partner_id IS NULL DO UPDATE SET name = excluded.name
		RETURNING id`, name).Scan(&live)
	if err != nil || !test {
		return live, err
	}
	var id int64
	err = tx.QueryRow(ctx, `INSERT INTO partners (name, live_partner_id) VALUES ($1, $2)
		ON CONFLICT (live_partner_id) DO UPDATE SET name = excluded.name
		RETURNING id`, name, live).Scan(&id)
	return id, err
}

// PartnerID returns the id of the live partner called name, or with test of
// its test partner; store.ErrNotFound if there is none.
func PartnerID(ctx context.Context, db *pgxpool.Pool, name string, test bool) (int64, error) {
	var id int64
	err := db.QueryRow(ctx, `SELECT CASE WHEN $2 THEN coalesce(t.id, 0) ELSE l.id END FROM partners l
		LEFT JOIN partners t ON t.live_partner_id = l.id AND $2
		WHERE l.name = $1 AND l.live_partner_id IS NULL`, name, test).Scan(&id)
	if err == nil && id == 0 {
		err = pgx.ErrNoRows
	}
	return id, store.NoRows(err)
}

// RevokeKey revokes key; store.ErrNotFound if no live key matches.
func RevokeKey(ctx context.Context, db *pgxpool.Pool, key string) error {
	return Revoke(ctx, db, key, audit.OSUser())
}

// Revoke revokes key for actor; store.ErrNotFound if no working key matches.
func Revoke(ctx context.Context, db *pgxpool.Pool, key, actor string) error {
	h := Hash(key)
	err := store.WithTx(ctx, db, func(tx pgx.Tx) error {
		var partner int64
		err := tx.QueryRow(ctx, `UPDATE api_keys SET revoked_at = now()
			WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
			RETURNING partner_id`, h[:]).Scan(&partner)
		if err != nil {
			return store.NoRows(err)
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: actor, Action: "keys revoke", Partner: partner, Target: Prefix(key)})
	})
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	return nil
}

// Roll issues a new key like key (same partner, kind and access) and has key
// expire after grace (at once with 0); store.ErrNotFound if key is not
// working. The new key is returned once.
func Roll(ctx context.Context, db *pgxpool.Pool, key string, grace time.Duration, actor string) (string, error) {
	if grace < 0 {
		return "", errors.New("--expires-in must not be negative")
	}
	h := Hash(key)
	var fresh string
	err := store.WithTx(ctx, db, func(tx pgx.Tx) error {
		var partner int64
		var readOnly bool
		var expires time.Time
		err := tx.QueryRow(ctx, `UPDATE api_keys
			SET expires_at = least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => $2))
			WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
			RETURNING partner_id, read_only, expires_at`, h[:], grace.Seconds()).Scan(&partner, &readOnly, &expires)
		if err != nil {
			return store.NoRows(err)
		}
		if fresh, err = newKey(strings.HasPrefix(key, testPrefix)); err != nil {
			return err
		}
		if err := insertKey(ctx, tx, partner, fresh, readOnly); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: actor, Action: "keys roll", Partner: partner,
			Target: Prefix(key), Detail: fmt.Sprintf("new key %s; old key expires %s", Prefix(fresh),
				expires.UTC().Format(time.RFC3339))})
	})
	if err != nil {
		return "", fmt.Errorf("roll key: %w", err)
	}
	return fresh, nil
}

// LookupKey returns the partner of a working key hash, or store.ErrNotFound.
func LookupKey(ctx context.Context, db *pgxpool.Pool, h [32]byte) (int64, error) {
	k, err := Find(ctx, db, h)
	return k.Partner, err
}

// Find returns the working key of hash h, or store.ErrNotFound. It records
// the key's use, to the minute: at most one write a minute per key, and only
// when the gateway reads the key, which its cache does a few times a minute
// for a key in use, never per call.
func Find(ctx context.Context, db *pgxpool.Pool, h [32]byte) (Key, error) {
	var k Key
	var expires *time.Time
	err := db.QueryRow(ctx, `WITH k AS (
			SELECT k.id, k.partner_id, p.livemode, k.read_only, k.expires_at, k.prefix, k.last_used_at
			FROM api_keys k JOIN partners p ON p.id = k.partner_id
			WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())),
		used AS (
			UPDATE api_keys SET last_used_at = now() FROM k
			WHERE api_keys.id = k.id AND (k.last_used_at IS NULL
				OR date_trunc('minute', k.last_used_at) < date_trunc('minute', now())))
		SELECT id, partner_id, livemode, read_only, expires_at, prefix FROM k`, h[:]).
		Scan(&k.ID, &k.Partner, &k.Live, &k.ReadOnly, &expires, &k.Prefix)
	if expires != nil {
		k.Expires = *expires
	}
	return k, store.NoRows(err)
}

// Listed is one key as keys list shows it: never the key nor its hash.
type Listed struct {
	Prefix   string
	Live     bool
	ReadOnly bool
	Created  time.Time
	Expires  *time.Time
	Revoked  *time.Time
	LastUsed *time.Time
}

// List returns the keys of the partner called name, live and test, oldest
// first; store.ErrNotFound if there is no such partner.
func List(ctx context.Context, db *pgxpool.Pool, name string) ([]Listed, error) {
	if _, err := PartnerID(ctx, db, name, false); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT k.prefix, p.livemode, k.read_only, k.created_at, k.expires_at, k.revoked_at, k.last_used_at
		FROM partners p JOIN api_keys k ON k.partner_id = p.id
		WHERE p.name = $1 ORDER BY k.created_at, k.id`, name)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Listed, error) {
		var l Listed
		err := r.Scan(&l.Prefix, &l.Live, &l.ReadOnly, &l.Created, &l.Expires, &l.Revoked, &l.LastUsed)
		return l, err
	})
}
