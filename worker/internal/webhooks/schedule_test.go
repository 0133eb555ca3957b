package webhooks

import (
	"testing"
	"time"
)

func TestScheduleDoublesUpToMaxWithJitter(t *testing.T) {
	s := Schedule{Min: 5 * time.Second, Max: time.Hour, For: 24 * time.Hour}
	from := time.Unix(1_700_000_000, 0)
	for attempt, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second,
		10: 2560 * time.Second, 11: time.Hour, 40: time.Hour} {
		if got := s.pause(attempt); got != want {
			t.Errorf("pause after attempt %d = %v, want %v", attempt, got, want)
		}
		for range 50 {
			next, ok := s.Next(from, from, attempt)
			if d := next.Sub(from); !ok || d < want*8/10 || d > want*12/10 {
				t.Fatalf("attempt %d: next in %v (ok %v), want %v +-20%%", attempt, d, ok, want)
			}
		}
	}
}

func TestScheduleEndsAfterTheWindow(t *testing.T) {
	s := Schedule{Min: 5 * time.Second, Max: time.Hour, For: 24 * time.Hour}
	from := time.Unix(1_700_000_000, 0)
	// 22h and at most 1h12m stays in the window.
	if _, ok := s.Next(from, from.Add(22*time.Hour), 30); !ok {
		t.Fatal("a retry 22h into a 24h window refused")
	}
	if _, ok := s.Next(from, from.Add(24*time.Hour), 1); ok {
		t.Fatal("a retry past the 24h window accepted")
	}
	// The whole schedule: attempts until the window closes.
	n, now := 1, from
	for {
		next, ok := s.Next(from, now, n)
		if !ok {
			break
		}
		now, n = next, n+1
	}
	if n < 25 || n > 45 {
		t.Fatalf("%d attempts in 24h, want about 33", n)
	}
}
