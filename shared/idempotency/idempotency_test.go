package idempotency

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/shared/testenv"
)

func newStore(t *testing.T) (*Store, *redis.Client) {
	opt, _ := redis.ParseURL(testenv.Redis(t, 9))
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return NewStore(rdb, time.Minute), rdb
}

func TestLifecycle(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	key := Key(7, "customer:ABC", true)
	step := func(token, fp string, want Outcome) Result {
		t.Helper()
		got, res, err := s.Acquire(ctx, key, token, fp)
		if err != nil || got != want {
			t.Fatalf("Acquire(%s, %s) = %v, %v; want %v", token, fp, got, err, want)
		}
		return res
	}
	step("t1", "fp1", New)
	step("t2", "fp1", InProgress)
	step("t2", "fp2", Mismatch)
	// Only the holder completes or releases.
	if err := s.Complete(ctx, key, "t2", "fp1", Result{Status: 500, Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	step("t3", "fp1", InProgress)
	if err := s.Release(ctx, key, "t2", "fp1"); err != nil {
		t.Fatal(err)
	}
	step("t3", "fp1", InProgress)
	if err := s.Complete(ctx, key, "t1", "fp1", Result{Status: 200, Body: []byte(`{"id":1}`)}); err != nil {
		t.Fatal(err)
	}
	if res := step("t4", "fp1", Replay); res.Status != 200 || string(res.Body) != `{"id":1}` {
		t.Fatalf("replay %+v", res)
	}
	step("t4", "fp2", Mismatch)
	if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("result TTL %v, want the store's 1m", ttl)
	}
	// A released key is free again at once.
	k2 := Key(7, "k2", false)
	s.Acquire(ctx, k2, "a", "fp")
	if err := s.Release(ctx, k2, "a", "fp"); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Acquire(ctx, k2, "b", "fp"); got != New {
		t.Fatalf("after release: %v", got)
	}
}

func TestKeysAreScopedToThePartner(t *testing.T) {
	if Key(1, "k", false) == Key(2, "k", false) || Key(1, "k", false) == Key(1, "k", true) {
		t.Fatal("keys collide across partners or kinds")
	}
	if !Derived(Key(3, "order:X", true)) || Derived(Key(3, "order:X", false)) || Derived(Key(3, "d:x", false)) {
		t.Fatal("Derived misreads keys")
	}
	if Fingerprint("a", []byte("{}")) == Fingerprint("b", []byte("{}")) {
		t.Fatal("fingerprint ignores the method")
	}
}
