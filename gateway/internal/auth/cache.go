package auth

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/oneoffice/provisioner/shared/store"
)

// Cache TTLs: a known key is trusted for PositiveTTL, so a revocation takes
// effect within it on every gateway; an unknown key is remembered for
// NegativeTTL, so a new key works almost at once and a flood of bad keys does
// not reach the database.
const (
	PositiveTTL = 4 * time.Second
	NegativeTTL = time.Second
	maxEntries  = 100_000
)

// Lookup finds the partner of a key hash.
type Lookup func(ctx context.Context, h [32]byte) (int64, error)

type entry struct {
	partner int64 // 0: no live key
	expires time.Time
}

// Cache resolves API keys to partners.
type Cache struct {
	lookup Lookup
	mu     sync.RWMutex
	m      map[[32]byte]entry
}

// NewCache returns a cache in front of lookup.
func NewCache(lookup Lookup) *Cache {
	return &Cache{lookup: lookup, m: make(map[[32]byte]entry)}
}

// Partner returns the partner of key, 0 if the key is unknown or revoked, or
// an error if the database cannot tell.
func (c *Cache) Partner(ctx context.Context, key string) (int64, error) {
	if key == "" {
		return 0, nil
	}
	h := Hash(key)
	now := time.Now()
	c.mu.RLock()
	e, ok := c.m[h]
	c.mu.RUnlock()
	if ok && now.Before(e.expires) {
		return e.partner, nil
	}
	partner, err := c.lookup(ctx, h)
	ttl := PositiveTTL
	switch {
	case errors.Is(err, store.ErrNotFound):
		partner, ttl = 0, NegativeTTL
	case err != nil:
		return 0, err
	}
	c.mu.Lock()
	if len(c.m) >= maxEntries {
		clear(c.m)
	}
	c.m[h] = entry{partner: partner, expires: now.Add(ttl)}
	c.mu.Unlock()
	return partner, nil
}
