package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/oneoffice/provisioner/shared/store"
)

// Cache TTLs: a known key is trusted for PositiveTTL after it was read, so a
// revocation takes effect within it on every gateway; an unknown key is
// remembered for NegativeTTL, so a new key works almost at once and the same
// bad key sent again does not reach the database.
const (
	PositiveTTL = 4 * time.Second
	NegativeTTL = time.Second
	// RefreshAhead: a known key still in use is read again in the background
	// this long before its trust runs out, so a partner's calls do not wait
	// for the database, nor queue behind a flood of made-up keys.
	RefreshAhead = time.Second
)

// Defaults of Options.
const (
	DefaultLookups       = 4
	DefaultLookupTimeout = time.Second
	// ReservedLookups is the database lookups at once kept for keys that
	// were valid when last read: anyone can make up keys, and a flood of them
	// must not hold up the partners whose keys exist.
	ReservedLookups = 1
)

// Sizes: the cache is bounded whatever the callers send. Made-up keys evict
// only one another, never the keys that exist.
const (
	maxKnown   = 10_000
	maxUnknown = 100_000
	// knownTTL is how long a key once valid keeps its reserved lane while
	// unused; its trust still ends PositiveTTL after it was read.
	knownTTL = 10 * time.Minute
)

// Errors of Partner: the database could not tell in time, so the caller is
// neither let in nor told its key is wrong.
var (
	ErrBusy    = errors.New("auth: every key lookup slot stayed busy until the deadline")
	ErrTimeout = errors.New("auth: the key lookup did not finish before the deadline")
)

// Lookup finds the partner of a key hash: store.ErrNotFound (or partner 0) if
// no live key has it.
type Lookup func(ctx context.Context, h [32]byte) (int64, error)

// KeyLookup finds the working key of a key hash: store.ErrNotFound (or
// partner 0) if there is none.
type KeyLookup func(ctx context.Context, h [32]byte) (Key, error)

// Result is what answered one call to Partner, or one database lookup, for
// the metrics.
type Result string

// Results. A call counts hit, negative_hit or shared, or is the one that
// looked its key up; a lookup counts miss (or refresh, in the background)
// when the database answered, else refused, timeout or error.
const (
	ResultHit         Result = "hit"
	ResultNegativeHit Result = "negative_hit"
	ResultShared      Result = "shared"
	ResultMiss        Result = "miss"
	ResultRefresh     Result = "refresh"
	ResultRefused     Result = "refused"
	ResultTimeout     Result = "timeout"
	ResultError       Result = "error"
)

// Results lists every Result, so metrics can start each one at zero.
func Results() []Result {
	return []Result{ResultHit, ResultNegativeHit, ResultShared, ResultMiss, ResultRefresh,
		ResultRefused, ResultTimeout, ResultError}
}

// Options tune a Cache; the zero value means the defaults.
type Options struct {
	// Lookups is the database lookups of unknown keys at once, default
	// DefaultLookups; ReservedLookups more serve keys once valid.
	Lookups int
	// LookupTimeout bounds the wait for a lookup slot plus the query, default
	// DefaultLookupTimeout. Past it the call gets ErrBusy or ErrTimeout.
	LookupTimeout time.Duration
	// Observe, if set, is told every Result.
	Observe func(Result)
}

type entry struct {
	key        Key
	read       time.Time   // when the database said so: trust ends PositiveTTL later
	refreshing atomic.Bool // a background read is under way
}

// Cache resolves API keys to partners. A key hash is looked up at most once
// at a time, whatever the number of calls that carry it; lookups are bounded
// in number and in time.
type Cache struct {
	lookup   KeyLookup
	timeout  time.Duration
	observe  func(Result)
	known    *expirable.LRU[[32]byte, *entry]
	unknown  *expirable.LRU[[32]byte, struct{}]
	flights  singleflight.Group
	lookups  *semaphore.Weighted // unknown keys
	reserved *semaphore.Weighted // keys valid when last read
	now      func() time.Time    // of the trust in known keys; tests move it
}

// NewCache returns a cache in front of lookup with the default Options.
func NewCache(lookup Lookup) *Cache { return NewCacheWith(lookup, Options{}) }

// NewCacheWith returns a cache in front of lookup, whose keys are live and
// full.
func NewCacheWith(lookup Lookup, o Options) *Cache {
	return NewKeyCache(func(ctx context.Context, h [32]byte) (Key, error) {
		p, err := lookup(ctx, h)
		return Key{Partner: p, Live: true}, err
	}, o)
}

// NewKeyCache returns a cache in front of lookup.
func NewKeyCache(lookup KeyLookup, o Options) *Cache {
	observe := o.Observe
	if observe == nil {
		observe = func(Result) {}
	}
	return &Cache{
		lookup:   lookup,
		timeout:  cmp.Or(o.LookupTimeout, DefaultLookupTimeout),
		observe:  observe,
		known:    expirable.NewLRU[[32]byte, *entry](maxKnown, nil, knownTTL),
		unknown:  expirable.NewLRU[[32]byte, struct{}](maxUnknown, nil, NegativeTTL),
		lookups:  semaphore.NewWeighted(int64(cmp.Or(o.Lookups, DefaultLookups))),
		reserved: semaphore.NewWeighted(ReservedLookups),
		now:      time.Now,
	}
}

// Partner returns the partner of key, 0 if the key is unknown, revoked or
// expired, or an error if the database cannot tell in time. admit, if not
// nil, is asked before a key never seen valid is looked up; its error is
// returned as is.
func (c *Cache) Partner(ctx context.Context, key string, admit func() error) (int64, error) {
	k, err := c.Key(ctx, key, admit)
	return k.Partner, err
}

// Key is Partner with all that is known of the key; its Partner is 0 if the
// key does not work.
func (c *Cache) Key(ctx context.Context, key string, admit func() error) (Key, error) {
	if key == "" {
		return Key{}, nil
	}
	h := Hash(key)
	e, known := c.known.Get(h)
	if known {
		now := c.now()
		if age := now.Sub(e.read); age < PositiveTTL {
			if age >= PositiveTTL-RefreshAhead && e.refreshing.CompareAndSwap(false, true) {
				go c.refresh(h, e)
			}
			c.observe(ResultHit)
			return e.key.at(now), nil
		}
	} else {
		if _, ok := c.unknown.Get(h); ok {
			c.observe(ResultNegativeHit)
			return Key{}, nil
		}
		if admit != nil {
			if err := admit(); err != nil {
				return Key{}, err
			}
		}
	}
	return c.resolve(ctx, h, known)
}

// resolve waits for the lookup of h, its own or the one under way.
func (c *Cache) resolve(ctx context.Context, h [32]byte, known bool) (Key, error) {
	led := false
	ch := c.flights.DoChan(string(h[:]), func() (any, error) {
		led = true
		// The lookup this call missed may have ended between its look at
		// the cache and this flight: its answer is there now.
		if e, ok := c.known.Get(h); ok && c.now().Sub(e.read) < PositiveTTL {
			c.observe(ResultHit)
			return e.key, nil
		}
		return c.load(h, known, ResultMiss)
	})
	select {
	case r := <-ch:
		if !led {
			c.observe(ResultShared)
		}
		if r.Err != nil {
			return Key{}, r.Err
		}
		return r.Val.(Key).at(c.now()), nil
	case <-ctx.Done():
		return Key{}, ctx.Err()
	}
}

func (c *Cache) refresh(h [32]byte, e *entry) {
	defer e.refreshing.Store(false)
	c.flights.Do(string(h[:]), func() (any, error) { return c.load(h, true, ResultRefresh) })
}

// load reads h from the database and caches the answer. The lookup is shared
// by every call that waits for it, so no caller's context may cancel it: it
// runs under its own deadline.
func (c *Cache) load(h [32]byte, known bool, ok Result) (key Key, err error) {
	defer func() {
		// singleflight re-raises a panic of a DoChan function on a goroutine
		// of its own, where nothing recovers it: a lookup that panics must
		// fail this key's calls, not the process.
		if r := recover(); r != nil {
			c.observe(ResultError)
			key, err = Key{}, fmt.Errorf("auth: key lookup panicked: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	lane := c.lookups
	if known {
		lane = c.reserved
	}
	if err := lane.Acquire(ctx, 1); err != nil {
		c.observe(ResultRefused)
		return Key{}, ErrBusy
	}
	defer lane.Release(1)
	read := c.now()
	key, err = c.lookup(ctx, h)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && key.Partner == 0):
		c.known.Remove(h)
		c.unknown.Add(h, struct{}{})
		c.observe(ok)
		return Key{}, nil
	case err == nil:
		c.unknown.Remove(h)
		c.known.Add(h, &entry{key: key, read: read})
		c.observe(ok)
		return key, nil
	case ctx.Err() != nil:
		c.observe(ResultTimeout)
		return Key{}, fmt.Errorf("%w: %w", ErrTimeout, err)
	default:
		c.observe(ResultError)
		return Key{}, fmt.Errorf("auth: look up key: %w", err)
	}
}

// at is k as of now: no key once it has expired, as a revoked one, even
// while its trust lasts.
func (k Key) at(now time.Time) Key {
	if !k.Expires.IsZero() && !now.Before(k.Expires) {
		return Key{}
	}
	return k
}
