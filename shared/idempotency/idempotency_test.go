package idempotency

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/shared/testenv"
)

func newStore(t *testing.T) (*Store, *redis.Client) {
	opt, _ := redis.ParseURL(testenv.Redis(t))
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

// Calls from many goroutines share pipelined round trips; each must still get
// its own answer: one taker per key, the others in progress, then replays.
func TestConcurrentCallsKeepTheirOwnAnswers(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	const keys, callers = 20, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := map[string]string{} // key -> token that took it
	others := 0
	for k := range keys {
		key := Key(8, fmt.Sprintf("concurrent-%d", k), false)
		for c := range callers {
			wg.Go(func() {
				token := fmt.Sprintf("t%d", c)
				got, _, err := s.Acquire(ctx, key, token, "fp")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Errorf("Acquire: %v", err)
				case got == New:
					if prev, dup := taken[key]; dup {
						t.Errorf("%s taken twice, by %s and %s", key, prev, token)
					}
					taken[key] = token
				case got == InProgress:
					others++
				default:
					t.Errorf("Acquire %s: %v", key, got)
				}
			})
		}
	}
	wg.Wait()
	if len(taken) != keys || others != keys*(callers-1) {
		t.Fatalf("%d keys taken and %d in progress, want %d and %d", len(taken), others, keys, keys*(callers-1))
	}
	for key, token := range taken {
		wg.Go(func() {
			body := []byte(`{"key":"` + key + `"}`)
			if err := s.Complete(ctx, key, token, "fp", Result{Status: 200, Body: body}); err != nil {
				t.Errorf("Complete: %v", err)
			}
		})
	}
	wg.Wait()
	for key := range taken {
		wg.Go(func() {
			got, res, err := s.Acquire(ctx, key, "late", "fp")
			if err != nil || got != Replay || string(res.Body) != `{"key":"`+key+`"}` {
				t.Errorf("replay of %s: %v %s %v", key, got, res.Body, err)
			}
		})
	}
	wg.Wait()
}

// countHook counts the commands a client sends alone and in pipelines.
type countHook struct{ alone, pipelined atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.alone.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.pipelined.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// A lone call makes its own round trip; calls under way together share theirs.
func TestOnlyConcurrentCallsArePipelined(t *testing.T) {
	opt, _ := redis.ParseURL(testenv.Redis(t))
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	var h countHook
	rdb.AddHook(&h)
	s := NewStore(rdb, time.Minute)
	ctx := context.Background()
	// The client sets its first connection up with a pipeline of its own.
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	h.alone.Store(0)
	h.pipelined.Store(0)
	for i := range 20 {
		if got, _, err := s.Acquire(ctx, Key(8, fmt.Sprintf("lone-%d", i), false), "t", "fp"); err != nil || got != New {
			t.Fatalf("lone call %d: %v, %v", i, got, err)
		}
	}
	if a, p := h.alone.Load(), h.pipelined.Load(); a < 20 || p != 0 {
		t.Fatalf("20 lone calls: %d commands sent alone, %d pipelined; want all alone", a, p)
	}
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := range 20 {
				if got, _, err := s.Acquire(ctx, Key(8, fmt.Sprintf("busy-%d-%d", g, i), false), "t", "fp"); err != nil || got != New {
					t.Errorf("caller %d call %d: %v, %v", g, i, got, err)
				}
			}
		})
	}
	wg.Wait()
	if p := h.pipelined.Load(); p == 0 {
		t.Fatalf("64 callers at once: no command pipelined (%d sent alone)", h.alone.Load())
	}
	t.Logf("64 x 20 concurrent calls: %d commands pipelined, %d alone", h.pipelined.Load(), h.alone.Load()-20)
}

// A finished record ends with the resource it created; a pending one is left
// to its holder.
func TestEnd(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	key := Key(7, "user:ann@example.com", true)
	s.Acquire(ctx, key, "t1", "fp")
	if err := s.End(ctx, key); err != nil {
		t.Fatal(err)
	}
	if rdb.Exists(ctx, key).Val() != 1 {
		t.Fatal("End deleted a pending record")
	}
	s.Complete(ctx, key, "t1", "fp", Result{Status: 200, Body: []byte(`{}`)})
	if err := s.End(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Acquire(ctx, key, "t2", "fp2"); got != New {
		t.Fatalf("after End: %v, want new", got)
	}
}

func TestPendingMarker(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if _, ok, err := s.Pending(ctx, 7, "r-1"); ok || err != nil {
		t.Fatalf("no marker: %v %v", ok, err)
	}
	at := time.Unix(1700000000, 0).UTC()
	if err := s.MarkPending(ctx, 7, "r-1", "suspendOrder", at); err != nil {
		t.Fatal(err)
	}
	p, ok, err := s.Pending(ctx, 7, "r-1")
	if !ok || err != nil || p.Method != "suspendOrder" || !p.At.Equal(at) {
		t.Fatalf("marker: %+v %v %v", p, ok, err)
	}
	if _, ok, _ := s.Pending(ctx, 8, "r-1"); ok {
		t.Fatal("another partner sees the marker")
	}
}

// lateCtx is a call whose deadline has passed by the time its take reaches
// Redis (held in a buffer while a link was cut), though nothing cancelled it
// on the way.
type lateCtx struct {
	context.Context
	deadline time.Time
}

func (c lateCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// A take that reaches Redis after its caller's deadline takes nothing: the
// caller answered 503, and its retry must find the key free, not in progress.
func TestATakePastItsDeadlineTakesNothing(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	key := Key(7, "late", false)
	if got, _, err := s.Acquire(lateCtx{ctx, time.Now().Add(-time.Second)}, key, "t1", "fp"); err == nil {
		t.Fatalf("a take past its deadline: %v, no error; want one", got)
	}
	if n := rdb.Exists(ctx, key).Val(); n != 0 {
		t.Fatalf("the late take left the key behind")
	}
	if got, _, err := s.Acquire(lateCtx{ctx, time.Now().Add(time.Minute)}, key, "t2", "fp"); err != nil || got != New {
		t.Fatalf("a take within its deadline: %v, %v; want new", got, err)
	}
	if got, _, err := s.Acquire(ctx, key, "t3", "fp"); err != nil || got != InProgress {
		t.Fatalf("a take with no deadline after it: %v, %v; want in progress", got, err)
	}
}
