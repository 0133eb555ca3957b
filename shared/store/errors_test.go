package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oneoffice/provisioner/shared/testenv"
)

func TestNoRows(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := Open(ctx, testenv.Database(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)

	var n int
	err = NoRows(db.QueryRow(ctx, `SELECT 1 WHERE false`).Scan(&n))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("a query that finds no row: %v, want ErrNotFound", err)
	}
	if err := NoRows(db.QueryRow(ctx, `SELECT 1`).Scan(&n)); err != nil || n != 1 {
		t.Fatalf("a query that finds a row: %d, %v", n, err)
	}
	wrapped := NoRows(fmt.Errorf("load order: %w", pgx.ErrNoRows))
	if !errors.Is(wrapped, ErrNotFound) || wrapped.Error() != "not found: load order: no rows in result set" {
		t.Errorf("a wrapped no-rows error: %q, want ErrNotFound keeping the context", wrapped)
	}
	other := errors.New("boom")
	if got := NoRows(other); got != other {
		t.Errorf("NoRows(other) = %v, want it unchanged", got)
	}
}
