package testenv

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTeardownRunsLastFirstWithinItsLimit(t *testing.T) {
	var td Teardown
	var order []string
	errBoom := errors.New("boom")
	td.Add("first", func(context.Context) error { order = append(order, "first"); return nil })
	td.Add("second", func(context.Context) error { order = append(order, "second"); return errBoom })
	td.Add("slow", func(ctx context.Context) error {
		order = append(order, "slow")
		<-ctx.Done()
		return ctx.Err()
	})
	// The slow step returns only when its context ends: Run returning at
	// all, with DeadlineExceeded joined, shows the limit was applied.
	err := td.Run(100 * time.Millisecond)
	if !errors.Is(err, errBoom) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want both errors joined", err)
	}
	if want := "slow second first"; strings.Join(order, " ") != want {
		t.Fatalf("order %q, want %q", strings.Join(order, " "), want)
	}
	if err := td.Run(time.Second); err != nil || len(order) != 3 {
		t.Fatalf("second Run = %v, ran %v", err, order)
	}
}
