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
	start := time.Now()
	err := td.Run(100 * time.Millisecond)
	if got := time.Since(start); got > 5*time.Second {
		t.Fatalf("Run took %v with a limit of 100ms", got)
	}
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
