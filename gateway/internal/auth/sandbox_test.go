package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/audit"
	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/testenv"
)

func migrated(t *testing.T) (context.Context, *pgxpool.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	db, err := store.Open(ctx, testenv.Database(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	return ctx, db
}

func create(t *testing.T, ctx context.Context, db *pgxpool.Pool, o KeyOptions) (string, Key) {
	t.Helper()
	o.Actor = "tester"
	key, _, err := Create(ctx, db, o)
	if err != nil {
		t.Fatal(err)
	}
	k, err := Find(ctx, db, Hash(key))
	if err != nil {
		t.Fatalf("Find(new key): %v", err)
	}
	return key, k
}

// A test key belongs to the partner's test partner: one per live partner,
// made with its first test key, named the same; a live key to the live one.
func TestTestKeysActAsTheTestPartner(t *testing.T) {
	t.Parallel()
	ctx, db := migrated(t)
	liveKey, live := create(t, ctx, db, KeyOptions{Partner: "P"})
	testKey, test := create(t, ctx, db, KeyOptions{Partner: "P", Test: true})
	_, test2 := create(t, ctx, db, KeyOptions{Partner: "P", Test: true})
	_, other := create(t, ctx, db, KeyOptions{Partner: "Q", Test: true})
	if !strings.HasPrefix(testKey, "oo_test_") || strings.HasPrefix(liveKey, "oo_test_") || !strings.HasPrefix(liveKey, "oo_") {
		t.Fatalf("keys %q (live), %q (test): want oo_... and oo_test_...", liveKey, testKey)
	}
	if !live.Live || test.Live || test.Partner == live.Partner || test2.Partner != test.Partner || other.Partner == test.Partner {
		t.Fatalf("live %+v, test %+v, second test %+v, Q's test %+v", live, test, test2, other)
	}
	var linked int64
	if err := db.QueryRow(ctx, `SELECT live_partner_id FROM partners WHERE id = $1 AND NOT livemode AND name = 'P'`,
		test.Partner).Scan(&linked); err != nil || linked != live.Partner {
		t.Fatalf("test partner's row: live_partner_id %d, %v; want %d", linked, err, live.Partner)
	}
	if id, err := PartnerID(ctx, db, "P", false); err != nil || id != live.Partner {
		t.Fatalf("PartnerID(P, live) = %d, %v", id, err)
	}
	if id, err := PartnerID(ctx, db, "P", true); err != nil || id != test.Partner {
		t.Fatalf("PartnerID(P, test) = %d, %v", id, err)
	}
	create(t, ctx, db, KeyOptions{Partner: "R"})
	if _, err := PartnerID(ctx, db, "R", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PartnerID(R without a test key, test) = %v, want ErrNotFound", err)
	}
}

// A rolled key keeps working until its expiry, and a new key like it (same
// partner, kind and access) works at once; rolling again never lengthens it.
func TestRoll(t *testing.T) {
	t.Parallel()
	ctx, db := migrated(t)
	old, k := create(t, ctx, db, KeyOptions{Partner: "P", Test: true, ReadOnly: true})
	fresh, err := Roll(ctx, db, old, time.Hour, "tester")
	if err != nil {
		t.Fatal(err)
	}
	nk, err := Find(ctx, db, Hash(fresh))
	if err != nil || nk.Partner != k.Partner || nk.Live || !nk.ReadOnly || !nk.Expires.IsZero() || !strings.HasPrefix(fresh, "oo_test_") {
		t.Fatalf("new key %q: %+v, %v; want like %+v, no expiry", fresh, nk, err, k)
	}
	ok, err := Find(ctx, db, Hash(old))
	if err != nil || time.Until(ok.Expires) < 59*time.Minute || time.Until(ok.Expires) > time.Hour {
		t.Fatalf("old key after a roll with an hour: %+v, %v", ok, err)
	}
	if _, err := Roll(ctx, db, old, 48*time.Hour, "tester"); err != nil {
		t.Fatal(err)
	}
	if again, _ := Find(ctx, db, Hash(old)); !again.Expires.Equal(ok.Expires) {
		t.Fatalf("rolled again with 48h: expires %v, was %v; a roll must not lengthen a key's life", again.Expires, ok.Expires)
	}
	if _, err := Roll(ctx, db, fresh, 0, "tester"); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(ctx, db, Hash(fresh)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a key rolled with 0 still found: %v", err)
	}
	if _, err := Roll(ctx, db, fresh, time.Hour, "tester"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rolling an expired key: %v, want ErrNotFound", err)
	}
	if err := Revoke(ctx, db, fresh, "tester"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking an expired key: %v, want ErrNotFound", err)
	}
}

// The cache refuses a key from its expiry on, while its trust lasts, as it
// would a revoked key.
func TestCacheRefusesAnExpiredKey(t *testing.T) {
	t.Parallel()
	clk := &clock{start: time.Now()}
	expires := clk.start.Add(2 * time.Second)
	c := NewKeyCache(func(context.Context, [32]byte) (Key, error) {
		return Key{Partner: 7, Live: true, Expires: expires}, nil
	}, Options{})
	c.now = clk.now
	if k, err := c.Key(context.Background(), "oo_k", nil); err != nil || k.Partner != 7 {
		t.Fatalf("before its expiry: %+v, %v", k, err)
	}
	clk.advance(2 * time.Second)
	if k, err := c.Key(context.Background(), "oo_k", nil); err != nil || k.Partner != 0 {
		t.Fatalf("at its expiry, within the cache's trust: %+v, %v; want no key", k, err)
	}
}

// keys list shows each key's prefix, kind and access, never the key; the
// use of a key is recorded at most once a minute.
func TestListAndLastUsed(t *testing.T) {
	t.Parallel()
	ctx, db := migrated(t)
	live, _ := create(t, ctx, db, KeyOptions{Partner: "P"})
	test, _ := create(t, ctx, db, KeyOptions{Partner: "P", Test: true, ReadOnly: true})
	create(t, ctx, db, KeyOptions{Partner: "Q"})
	got, err := List(ctx, db, "P")
	if err != nil || len(got) != 2 {
		t.Fatalf("List(P) = %+v, %v; want its 2 keys", got, err)
	}
	if got[0].Prefix != live[:9] || !got[0].Live || got[0].ReadOnly || got[1].Prefix != test[:14] || got[1].Live || !got[1].ReadOnly {
		t.Fatalf("List(P) = %+v", got)
	}
	if got[0].LastUsed == nil { // create's Find used it
		t.Fatal("a key looked up has no last use")
	}
	if _, err := List(ctx, db, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("List(unknown partner) = %v", err)
	}
	// Within the same minute, a lookup writes nothing: the row stays as set.
	mark := `UPDATE api_keys SET last_used_at = $2 WHERE prefix = $1`
	thisMinute := time.Now().Truncate(time.Minute)
	if _, err := db.Exec(ctx, mark, got[0].Prefix, thisMinute); err != nil {
		t.Fatal(err)
	}
	lastUsed := func() time.Time {
		var at time.Time
		if err := db.QueryRow(ctx, `SELECT last_used_at FROM api_keys WHERE prefix = $1`, got[0].Prefix).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	if _, err := Find(ctx, db, Hash(live)); err != nil {
		t.Fatal(err)
	}
	if at := lastUsed(); !at.Equal(thisMinute) && time.Now().Truncate(time.Minute).Equal(thisMinute) {
		t.Fatalf("a lookup in the minute of the last use wrote %v", at)
	}
	if _, err := db.Exec(ctx, mark, got[0].Prefix, thisMinute.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(ctx, db, Hash(live)); err != nil {
		t.Fatal(err)
	}
	if at := lastUsed(); !at.After(thisMinute.Add(-time.Minute)) {
		t.Fatalf("a lookup an hour after the last use left it at %v", at)
	}
}

// Every change to keys writes its audit row in its own transaction: who,
// what, on whom; a change that fails writes none.
func TestKeyChangesAreAudited(t *testing.T) {
	t.Parallel()
	ctx, db := migrated(t)
	key, k := create(t, ctx, db, KeyOptions{Partner: "P", Test: true})
	fresh, err := Roll(ctx, db, key, time.Hour, "roller")
	if err != nil {
		t.Fatal(err)
	}
	if err := Revoke(ctx, db, fresh, "revoker"); err != nil {
		t.Fatal(err)
	}
	if err := Revoke(ctx, db, fresh, "revoker"); err == nil {
		t.Fatal("revoked twice")
	}
	rows, err := audit.List(ctx, db, time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ actor, action, target string }{
		{"tester", "keys create", Prefix(key)}, {"roller", "keys roll", Prefix(key)}, {"revoker", "keys revoke", Prefix(fresh)},
	}
	if len(rows) != len(want) {
		t.Fatalf("audit rows %+v, want %d", rows, len(want))
	}
	for i, w := range want {
		r := rows[i]
		if r.Actor != w.actor || r.Action != w.action || r.Target != w.target || r.Partner != k.Partner ||
			r.PartnerName != "P" || r.Livemode {
			t.Errorf("audit row %d = %+v, want %+v on P's test partner", i, r, w)
		}
		if strings.Contains(r.Detail+r.Target, key) || strings.Contains(r.Detail+r.Target, fresh) {
			t.Errorf("audit row %d holds a whole key: %+v", i, r)
		}
	}
}
