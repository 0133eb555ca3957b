package testenv

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func claimsClient(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: servers(t).RedisAddr})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisClaimsAreExclusiveAndReleased(t *testing.T) {
	s, ctx := servers(t), t.Context()
	a, err := s.ClaimRedis(ctx, "claim test a", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(context.Background())
	b, err := s.ClaimRedis(ctx, "claim test b", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release(context.Background())
	if a.DB == b.DB || a.DB < FirstRedisDB || b.DB > LastRedisDB {
		t.Fatalf("claimed DBs %d and %d", a.DB, b.DB)
	}
	if _, err := s.ClaimRedis(ctx, "claim test c", a.DB); err == nil {
		t.Fatalf("DB %d claimed twice", a.DB)
	}
	// Data left in a claimed DB is gone at release, and so is the claim.
	data := redis.NewClient(&redis.Options{Addr: s.RedisAddr, DB: a.DB})
	defer data.Close()
	if err := data.Set(ctx, "left-over", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := data.Exists(ctx, "left-over").Result(); err != nil || n != 0 {
		t.Fatalf("after release: %d keys left (%v)", n, err)
	}
	if n, _ := claimsClient(t).Exists(ctx, claimKey(a.DB)).Result(); n != 0 {
		t.Fatalf("claim on DB %d still there after release", a.DB)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("second release: %v", err)
	}
}

func TestRedisClaimTakenOverIsReportedAndLeftAlone(t *testing.T) {
	s, ctx := servers(t), t.Context()
	r, err := s.ClaimRedis(ctx, "claim test", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Another owner holds the key now, as after an expiry or a Redis restart.
	claims := claimsClient(t)
	if err := claims.Set(ctx, claimKey(r.DB), "someone else", claimTTL).Err(); err != nil {
		t.Fatal(err)
	}
	defer claims.Del(context.Background(), claimKey(r.DB))
	r.lost.Store(true) // what the next refresh would find
	if err := r.Release(ctx); !errors.Is(err, ErrClaimLost) {
		t.Fatalf("Release = %v, want ErrClaimLost", err)
	}
	if owner, _ := claims.Get(ctx, claimKey(r.DB)).Result(); owner != "someone else" {
		t.Fatalf("the other owner's claim was touched: %q", owner)
	}
}

func TestAnUnansweredServerIsWaitedForThenFails(t *testing.T) {
	s := servers(t)
	s.RedisAddr, s.Wait = "127.0.0.1:1", 500*time.Millisecond // nothing listens on port 1
	_, err := s.ClaimRedis(t.Context(), "claim test", 0)
	if err == nil || !strings.Contains(err.Error(), "TEST_REDIS_ADDR") || !strings.Contains(err.Error(), "attempts") {
		t.Fatalf("ClaimRedis = %v, want a failure after several attempts", err)
	}
}
