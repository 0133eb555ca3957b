package signing

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/singleflight"

	"github.com/oneoffice/provisioner/shared/store"
)

// secretPrefix marks OneOffice signing secrets, so that a leaked one is
// recognizable and is not mistaken for an API key (oo_).
const secretPrefix = "oosig_"

// CacheTTL is how long a gateway trusts what it read of a partner's secret,
// so that a new, replaced or removed secret takes effect within 5 s, as a
// revoked key does. cacheSize bounds the memory the cache can take.
// lookupTimeout bounds a database lookup: past it the call is answered 503
// rather than held.
const (
	CacheTTL      = 4 * time.Second
	cacheSize     = 100_000
	lookupTimeout = time.Second
)

// NewSecret returns a new random signing secret: 256 bits, base64url, with
// the prefix. It is shown once, to the operator who creates it.
func NewSecret() (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	return secretPrefix + base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// LookupSecret returns the signing secret of partner, "" if the partner does
// not sign, or store.ErrNotFound if there is no such partner.
func LookupSecret(ctx context.Context, db *pgxpool.Pool, partner int64) (string, error) {
	var secret *string
	err := db.QueryRow(ctx, `SELECT signing_secret FROM partners WHERE id = $1`, partner).Scan(&secret)
	if err = store.NoRows(err); err != nil {
		return "", err
	}
	if secret == nil {
		return "", nil
	}
	return *secret, nil
}

// secrets caches LookupSecret per partner. The calls of one partner that
// miss the cache together share one lookup. Errors are not cached: the next
// call asks the database again.
type secrets struct {
	db     *pgxpool.Pool
	cache  *expirable.LRU[int64, string]
	flight singleflight.Group
}

func newSecrets(db *pgxpool.Pool) *secrets {
	return &secrets{db: db, cache: expirable.NewLRU[int64, string](cacheSize, nil, CacheTTL)}
}

// get returns the partner's secret, "" if it does not sign.
func (s *secrets) get(ctx context.Context, partner int64) (string, error) {
	if secret, ok := s.cache.Get(partner); ok {
		return secret, nil
	}
	v, err, _ := s.flight.Do(strconv.FormatInt(partner, 10), func() (any, error) {
		// Other calls wait on this lookup: it must not end with the
		// context of the call that happened to start it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
		defer cancel()
		secret, err := LookupSecret(ctx, s.db, partner)
		// A partner that disappeared has no secret; its key no longer
		// authenticates it either, within the key cache's TTL.
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("signing secret: %w", err)
		}
		s.cache.Add(partner, secret)
		return secret, nil
	})
	return v.(string), err
}
