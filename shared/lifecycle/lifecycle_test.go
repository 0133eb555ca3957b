package lifecycle

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCloseRunsLastFirstAndJoinsErrors(t *testing.T) {
	t.Parallel()
	var got []string
	var c Closers
	errRedis := errors.New("redis refused")
	errAdmin := errors.New("admin refused")
	c.Push("database", NoError(func() { got = append(got, "database") }))
	c.Push("redis", NoContext(func() error { got = append(got, "redis"); return errRedis }))
	c.Push("admin", func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("a step's context has no deadline")
		}
		got = append(got, "admin")
		return errAdmin
	})

	err := c.Close(time.Second)
	if want := []string{"admin", "redis", "database"}; !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
	if !errors.Is(err, errRedis) || !errors.Is(err, errAdmin) {
		t.Fatalf("Close() = %v, want both step errors joined", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "stop redis: redis refused") || !strings.Contains(msg, "stop admin: admin refused") {
		t.Errorf("Close() = %q, want each error named by its step", msg)
	}
	if err := c.Close(time.Second); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
	if len(got) != 3 {
		t.Errorf("second Close ran steps again: %v", got)
	}
}

func TestCloseEmpty(t *testing.T) {
	t.Parallel()
	var c Closers
	if err := c.Close(time.Second); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
}

// TestCloseTimeLimitIsHard checks that a step ignoring its context cannot
// hold Close past the limit, and that the steps after it are not started.
func TestCloseTimeLimitIsHard(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	var c Closers
	ran := make(chan string, 2)
	c.Push("database", NoError(func() { ran <- "database" }))
	c.Push("stuck", NoError(func() { <-release }))
	c.Push("admin", NoError(func() { ran <- "admin" }))

	// The stuck step never returns before the test ends: that Close returns
	// at all shows it did not wait for it.
	err := c.Close(50 * time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close() = %v, want context.DeadlineExceeded", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "stop stuck: still running") || !strings.Contains(msg, "stop database: not run") {
		t.Errorf("Close() = %q, want the stuck step and the skipped one named", msg)
	}
	close(ran)
	var got []string
	for s := range ran {
		got = append(got, s)
	}
	if !slices.Equal(got, []string{"admin"}) {
		t.Errorf("steps run = %v, want only the one pushed after the stuck step", got)
	}
}
