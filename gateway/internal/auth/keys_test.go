package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// TestKeys checks that a key is found until it is revoked, and that an
// unknown or revoked key is the store's ErrNotFound, not the driver's error.
func TestKeys(t *testing.T) {
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
	partner, err := LookupKey(ctx, db, Hash(key))
	if err != nil || partner == 0 {
		t.Fatalf("LookupKey(new key) = %d, %v", partner, err)
	}
	if _, err := LookupKey(ctx, db, Hash("oo_unknown")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LookupKey(unknown key) = %v, want store.ErrNotFound", err)
	}
	if err := RevokeKey(ctx, db, key); err != nil {
		t.Fatal(err)
	}
	if _, err := LookupKey(ctx, db, Hash(key)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LookupKey(revoked key) = %v, want store.ErrNotFound", err)
	}
	if err := RevokeKey(ctx, db, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RevokeKey twice = %v, want store.ErrNotFound", err)
	}
}
