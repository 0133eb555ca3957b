package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/redis/go-redis/v9"
)

// Redis DBs 1 to 12 are handed out; DB 0 holds the claims (and is the
// service's default DB, which nothing here flushes). DBs 13 to 15 are left to
// outside tools that pick a fixed DB without claiming it (the operations
// contract smoke check flushes DB 13).
const (
	FirstRedisDB = 1
	LastRedisDB  = 12
	// RedisClaimPrefix is followed by the DB number. Every claim goes
	// through ClaimRedis (the scripts' stacks too, through the lab), so
	// tests, benches and scripts never share a DB.
	RedisClaimPrefix = "oneoffice:testenv:redis-db:"
	// claimTTL outlives a holder that stopped refreshing (killed, or frozen)
	// by a little; claimRefresh renews it well before.
	claimTTL     = 2 * time.Minute
	claimRefresh = 10 * time.Second
)

// ErrNoRedisDB is returned when every DB from FirstRedisDB to LastRedisDB is
// claimed.
var ErrNoRedisDB = errors.New("every Redis DB from 1 to 12 is claimed")

// ErrClaimLost is returned by Release when another owner took the DB while
// this one held it (its claim expired, or Redis restarted empty).
var ErrClaimLost = errors.New("the Redis DB claim was taken over by another owner")

// claimScript takes the claim KEYS[1] for owner ARGV[1] for ARGV[2] ms, or
// renews it if owner already holds it; it returns 0 if another owner does.
// The same script refreshes a held claim, and takes it back if Redis lost it.
var claimScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0`)

// unclaimScript deletes the claim KEYS[1] if owner ARGV[1] holds it.
var unclaimScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// RedisDB is a Redis DB claimed by one owner until Release.
type RedisDB struct {
	DB  int    // the DB number
	URL string // redis://addr/DB

	s      Servers
	owner  string
	claims *redis.Client // DB 0
	stop   context.CancelFunc
	done   chan struct{}
	lost   atomic.Bool
	once   sync.Once
}

// ClaimRedis claims a Redis DB for owner (a label, made unique here) and
// flushes it: DB db if db > 0 (refused at once if held), else the first free
// one (waited for while every one is held). The claim is renewed
// in the background until Release.
func (s Servers) ClaimRedis(ctx context.Context, owner string, db int) (*RedisDB, error) {
	candidates := []int{db}
	if db == 0 {
		candidates = candidates[:0]
		for n := FirstRedisDB; n <= LastRedisDB; n++ {
			candidates = append(candidates, n)
		}
	} else if db < FirstRedisDB || db > LastRedisDB {
		return nil, fmt.Errorf("Redis DB %d: want %d to %d", db, FirstRedisDB, LastRedisDB)
	}
	r := &RedisDB{s: s, owner: fmt.Sprintf("%s pid %d %s", owner, os.Getpid(), Name("claim")),
		claims: s.redisClient(0)}
	err := s.retry(ctx, s.redisWhat(), func(ctx context.Context, _ int) error {
		return r.claim(ctx, candidates)
	})
	if err == nil {
		r.URL = fmt.Sprintf("redis://%s/%d", s.RedisAddr, r.DB)
		if err = r.flush(ctx); err != nil {
			err = errors.Join(err, r.unclaim(context.WithoutCancel(ctx)))
		}
	}
	if err != nil {
		r.claims.Close()
		return nil, err
	}
	refreshCtx, stop := context.WithCancel(context.Background())
	r.stop, r.done = stop, make(chan struct{})
	go r.refresh(refreshCtx)
	return r, nil
}

// redisClient is a client of DB db that fails fast: retry does the waiting.
func (s Servers) redisClient(db int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.RedisAddr, DB: db, MaxRetries: -1, DialerRetries: 1})
}

func (s Servers) redisWhat() string { return "Redis at " + s.RedisAddr + " (TEST_REDIS_ADDR)" }

// claim takes the first free DB of candidates.
func (r *RedisDB) claim(ctx context.Context, candidates []int) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	for _, n := range candidates {
		got, err := claimScript.Run(ctx, r.claims, []string{claimKey(n)}, r.owner, claimTTL.Milliseconds()).Int()
		if err != nil {
			return err
		}
		if got == 1 {
			r.DB = n
			return nil
		}
	}
	if len(candidates) == 1 {
		return backoff.Permanent(r.taken(ctx, candidates))
	}
	// Every DB is held: suites running side by side wait for one to be
	// released, up to the servers' wait.
	return r.taken(ctx, candidates)
}

// taken names the holders of candidates, for the error when none is free.
func (r *RedisDB) taken(ctx context.Context, candidates []int) error {
	keys := make([]string, len(candidates))
	for i, n := range candidates {
		keys[i] = claimKey(n)
	}
	owners, _ := r.claims.MGet(ctx, keys...).Result()
	var held []string
	for i, o := range owners {
		if o != nil {
			held = append(held, fmt.Sprintf("%d by %v", candidates[i], o))
		}
	}
	if len(candidates) == 1 {
		return fmt.Errorf("Redis DB %d is claimed (%s)", candidates[0], strings.Join(held, ""))
	}
	return fmt.Errorf("%w: %s", ErrNoRedisDB, strings.Join(held, "; "))
}

func claimKey(db int) string { return RedisClaimPrefix + strconv.Itoa(db) }

// refresh renews the claim until ctx ends; it stops when another owner
// holds the claim. Errors are left to the next tick: Redis may be restarting.
func (r *RedisDB) refresh(ctx context.Context) {
	defer close(r.done)
	tick := time.NewTicker(claimRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c, cancel := context.WithTimeout(ctx, attemptTimeout)
		got, err := claimScript.Run(c, r.claims, []string{claimKey(r.DB)}, r.owner, claimTTL.Milliseconds()).Int()
		cancel()
		if err == nil && got == 0 {
			r.lost.Store(true)
			return
		}
	}
}

func (r *RedisDB) flush(ctx context.Context) error {
	rdb := r.s.redisClient(r.DB)
	defer rdb.Close()
	return r.s.retry(ctx, r.s.redisWhat(), func(ctx context.Context, _ int) error {
		ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			return fmt.Errorf("flush DB %d: %w", r.DB, err)
		}
		return nil
	})
}

func (r *RedisDB) unclaim(ctx context.Context) error {
	return r.s.retry(ctx, r.s.redisWhat(), func(ctx context.Context, _ int) error {
		ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		return unclaimScript.Run(ctx, r.claims, []string{claimKey(r.DB)}, r.owner).Err()
	})
}

// Release flushes the DB and gives the claim up. A DB another owner took
// meanwhile is left alone and reported with ErrClaimLost. Only the first call
// does anything.
func (r *RedisDB) Release(ctx context.Context) error {
	var err error
	r.once.Do(func() {
		r.stop()
		<-r.done
		defer r.claims.Close()
		if r.lost.Load() {
			err = fmt.Errorf("Redis DB %d: %w", r.DB, ErrClaimLost)
			return
		}
		err = errors.Join(r.flush(ctx), r.unclaim(ctx))
	})
	return err
}

// Redis claims a Redis DB for the test, flushed now and at cleanup, and
// returns its URL. Tests in parallel, in this process or another, get
// different DBs; the test fails when Redis does not answer or every DB is
// taken.
func Redis(t testing.TB) string {
	t.Helper()
	s := servers(t)
	ctx, cancel := context.WithTimeout(context.Background(), s.cleanupLimit())
	defer cancel()
	r, err := s.ClaimRedis(ctx, "test "+t.Name(), 0)
	if err != nil {
		t.Fatalf("claim a Redis DB: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cleanupLimit())
		defer cancel()
		if err := r.Release(ctx); err != nil {
			t.Errorf("release the test's Redis DB: %v", err)
		}
	})
	return r.URL
}
