package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// keyStore stands in for the database where a test injects a failure: a
// lookup of a slow key hangs until release, as a stuck database does,
// whatever its deadline.
type keyStore struct {
	mu       sync.Mutex
	partners map[[32]byte]int64
	slow     map[[32]byte]bool
	release  chan struct{}
	entered  chan [32]byte // told of every slow lookup as it starts
	calls    atomic.Int32
}

func newKeyStore() *keyStore {
	return &keyStore{partners: map[[32]byte]int64{}, slow: map[[32]byte]bool{},
		release: make(chan struct{}), entered: make(chan [32]byte, 100)}
}

func (k *keyStore) set(key string, partner int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if partner == 0 {
		delete(k.partners, Hash(key))
		return
	}
	k.partners[Hash(key)] = partner
}

func (k *keyStore) lookup(_ context.Context, h [32]byte) (int64, error) {
	k.calls.Add(1)
	k.mu.Lock()
	slow := k.slow[h]
	k.mu.Unlock()
	if slow {
		k.entered <- h
		<-k.release
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if p, ok := k.partners[h]; ok {
		return p, nil
	}
	return 0, fmt.Errorf("key: %w", store.ErrNotFound)
}

// results counts what the cache reports, and tells refreshes as they end.
type results struct {
	mu        sync.Mutex
	n         map[Result]int
	refreshed chan struct{}
}

func newResults() *results {
	return &results{n: map[Result]int{}, refreshed: make(chan struct{}, 10)}
}

func (r *results) observe(res Result) {
	r.mu.Lock()
	r.n[res]++
	r.mu.Unlock()
	if res == ResultRefresh {
		r.refreshed <- struct{}{}
	}
}

func (r *results) get(res Result) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[res]
}

// clock is the cache's time for a test: it stands still, so a slow machine
// does not age the keys, and moves forward without waiting.
type clock struct {
	start  time.Time
	offset atomic.Int64
}

func (c *clock) now() time.Time          { return c.start.Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func newTestCache(lookup Lookup, o Options) (*Cache, *results, *clock) {
	res, clk := newResults(), &clock{start: time.Now()}
	o.Observe = res.observe
	c := NewCacheWith(lookup, o)
	c.now = clk.now
	return c, res, clk
}

func partner(t *testing.T, c *Cache, key string) int64 {
	t.Helper()
	p, err := c.Partner(context.Background(), key, nil)
	if err != nil {
		t.Fatalf("Partner(%s): %v", key, err)
	}
	return p
}

// TestCacheOnTheDatabase: a key is found, then answered from the cache; an
// unknown key is remembered; a revoked key is trusted no longer than
// PositiveTTL after it was last read.
func TestCacheOnTheDatabase(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := store.Open(ctx, testenv.Database(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	key, err := CreateKey(ctx, db, "P")
	if err != nil {
		t.Fatal(err)
	}
	want, err := LookupKey(ctx, db, Hash(key))
	if err != nil {
		t.Fatal(err)
	}
	c, res, clk := newTestCache(func(ctx context.Context, h [32]byte) (int64, error) {
		return LookupKey(ctx, db, h)
	}, Options{})

	for range 2 {
		if got := partner(t, c, key); got != want {
			t.Fatalf("Partner(key) = %d, want %d", got, want)
		}
		if got := partner(t, c, "oo_unknown"); got != 0 {
			t.Fatalf("Partner(unknown key) = %d, want 0", got)
		}
	}
	if res.get(ResultMiss) != 2 || res.get(ResultHit) != 1 || res.get(ResultNegativeHit) != 1 {
		t.Fatalf("results %v, want 2 misses, 1 hit, 1 negative hit", res.n)
	}
	if err := RevokeKey(ctx, db, key); err != nil {
		t.Fatal(err)
	}
	clk.advance(PositiveTTL)
	if got := partner(t, c, key); got != 0 {
		t.Fatalf("Partner(key revoked %v ago) = %d, want 0", PositiveTTL, got)
	}
}

// TestOneLookupPerKeyAtATime: calls that carry the same key while it is being
// looked up wait for that lookup.
func TestOneLookupPerKeyAtATime(t *testing.T) {
	t.Parallel()
	ks := newKeyStore()
	ks.set("oo_a", 7)
	ks.slow[Hash("oo_a")] = true
	c, res, _ := newTestCache(ks.lookup, Options{})
	const callers = 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			if p, err := c.Partner(context.Background(), "oo_a", nil); err != nil || p != 7 {
				errs <- fmt.Errorf("Partner = %d, %v; want 7", p, err)
			}
		})
	}
	<-ks.entered
	close(ks.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Each caller either joined the lookup or, arriving after it, found its
	// answer in the cache.
	if n := ks.calls.Load(); n != 1 {
		t.Fatalf("%d lookups for one key, want 1", n)
	}
	if got := res.get(ResultMiss) + res.get(ResultShared) + res.get(ResultHit); got != callers {
		t.Fatalf("results %v, want %d calls answered", res.n, callers)
	}
}

// TestLookupsAreBoundedWithADeadline: with every lookup slot held by a stuck
// database, an unknown key is refused at the deadline, and a key that was
// valid is still looked up in the lane kept for it.
func TestLookupsAreBoundedWithADeadline(t *testing.T) {
	t.Parallel()
	ks := newKeyStore()
	ks.set("oo_known", 1)
	c, res, clk := newTestCache(ks.lookup, Options{Lookups: 2, LookupTimeout: 50 * time.Millisecond})
	if p := partner(t, c, "oo_known"); p != 1 {
		t.Fatalf("Partner(known) = %d", p)
	}
	done := make(chan error, 2)
	for _, key := range []string{"oo_stuck1", "oo_stuck2"} {
		ks.mu.Lock()
		ks.slow[Hash(key)] = true
		ks.mu.Unlock()
		go func() { _, err := c.Partner(context.Background(), key, nil); done <- err }()
		<-ks.entered
	}
	if _, err := c.Partner(context.Background(), "oo_waits", nil); !errors.Is(err, ErrBusy) {
		t.Fatalf("Partner with every slot held = %v, want ErrBusy", err)
	}
	if res.get(ResultRefused) != 1 {
		t.Fatalf("results %v, want 1 refused", res.n)
	}
	clk.advance(PositiveTTL)
	if p := partner(t, c, "oo_known"); p != 1 {
		t.Fatalf("Partner(known key, stale) with the lookup slots held = %d, want 1", p)
	}
	close(ks.release)
	for range 2 {
		<-done
	}
}

// TestLookupPastTheDeadline: a database that does not answer in time gives
// ErrTimeout, not a 401.
func TestLookupPastTheDeadline(t *testing.T) {
	t.Parallel()
	hang := func(ctx context.Context, _ [32]byte) (int64, error) {
		<-ctx.Done()
		return 0, fmt.Errorf("query: %w", ctx.Err())
	}
	c, res, _ := newTestCache(hang, Options{LookupTimeout: 20 * time.Millisecond})
	if _, err := c.Partner(context.Background(), "oo_x", nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Partner = %v, want ErrTimeout", err)
	}
	if res.get(ResultTimeout) != 1 {
		t.Fatalf("results %v, want 1 timeout", res.n)
	}
}

// TestPanickingLookupIsAnError: the lookup runs on a goroutine of its own,
// where a panic would end the process.
func TestPanickingLookupIsAnError(t *testing.T) {
	t.Parallel()
	c, res, _ := newTestCache(func(context.Context, [32]byte) (int64, error) { panic("injected") }, Options{})
	if _, err := c.Partner(context.Background(), "oo_x", nil); err == nil {
		t.Fatal("Partner after a panicking lookup: no error")
	}
	if res.get(ResultError) != 1 {
		t.Fatalf("results %v, want 1 error", res.n)
	}
}

// TestUnknownKeysDoNotEvictKnownOnes: more made-up keys than the cache holds
// leave the valid key cached.
func TestUnknownKeysDoNotEvictKnownOnes(t *testing.T) {
	t.Parallel()
	ks := newKeyStore()
	ks.set("oo_known", 1)
	c, _, _ := newTestCache(ks.lookup, Options{})
	partner(t, c, "oo_known")
	for i := range maxUnknown + 1000 {
		if p := partner(t, c, fmt.Sprintf("oo_bad_%d", i)); p != 0 {
			t.Fatalf("made-up key %d: partner %d", i, p)
		}
	}
	before := ks.calls.Load()
	if p := partner(t, c, "oo_known"); p != 1 {
		t.Fatalf("Partner(known) = %d", p)
	}
	if ks.calls.Load() != before {
		t.Fatal("the known key was looked up again: the made-up keys evicted it")
	}
}

// TestKnownKeysAreRefreshedAhead: a key in use is read again in the
// background before its trust ends; a revocation seen by that read holds.
func TestKnownKeysAreRefreshedAhead(t *testing.T) {
	t.Parallel()
	ks := newKeyStore()
	ks.set("oo_a", 3)
	c, res, clk := newTestCache(ks.lookup, Options{})
	partner(t, c, "oo_a")
	clk.advance(PositiveTTL - RefreshAhead/2)
	if p := partner(t, c, "oo_a"); p != 3 {
		t.Fatalf("Partner near the end of its trust = %d, want 3", p)
	}
	<-res.refreshed
	if n := ks.calls.Load(); n != 2 || res.get(ResultHit) != 1 {
		t.Fatalf("%d lookups, results %v; want 2 lookups and the call answered from the cache", n, res.n)
	}
	ks.set("oo_a", 0) // revoked
	clk.advance(PositiveTTL)
	if p := partner(t, c, "oo_a"); p != 0 {
		t.Fatalf("Partner(revoked) = %d, want 0", p)
	}
}

// TestAdmitIsAskedOnlyBeforeALookup: the client limit spends nothing on keys
// the cache answers.
func TestAdmitIsAskedOnlyBeforeALookup(t *testing.T) {
	t.Parallel()
	ks := newKeyStore()
	ks.set("oo_known", 1)
	c, _, _ := newTestCache(ks.lookup, Options{})
	partner(t, c, "oo_known")
	partner(t, c, "oo_bad")
	errRefused := errors.New("refused")
	asked := 0
	admit := func() error { asked++; return errRefused }
	for _, key := range []string{"oo_known", "oo_bad"} {
		if _, err := c.Partner(context.Background(), key, admit); err != nil {
			t.Fatalf("Partner(%s) = %v, answered by the cache", key, err)
		}
	}
	if _, err := c.Partner(context.Background(), "oo_new", admit); !errors.Is(err, errRefused) {
		t.Fatalf("Partner(new key) = %v, want admit's error", err)
	}
	if asked != 1 || ks.calls.Load() != 2 {
		t.Fatalf("admit asked %d times, %d lookups; want 1 and 2", asked, ks.calls.Load())
	}
}
