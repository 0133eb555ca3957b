package provision

import (
	"testing"
	"time"
)

func day(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestAddTerm(t *testing.T) {
	t.Parallel()
	cases := []struct {
		start, duration, want string
	}{
		{"2025-01-31T10:00:00Z", "monthly", "2025-02-28T10:00:00Z"},
		{"2024-01-31T10:00:00Z", "monthly", "2024-02-29T10:00:00Z"}, // leap year
		{"2024-02-29T00:00:00Z", "yearly", "2025-02-28T00:00:00Z"},
		{"2024-02-29T00:00:00Z", "monthly", "2024-03-29T00:00:00Z"},
		{"2025-03-31T23:59:59Z", "monthly", "2025-04-30T23:59:59Z"},
		{"2025-12-31T12:00:00Z", "monthly", "2026-01-31T12:00:00Z"}, // year rolls over
		{"2025-05-15T08:30:00Z", "monthly", "2025-06-15T08:30:00Z"},
		{"2025-05-15T08:30:00Z", "yearly", "2026-05-15T08:30:00Z"},
		{"2023-08-31T00:00:00Z", "monthly", "2023-09-30T00:00:00Z"},
	}
	for _, c := range cases {
		got := AddTerm(day(c.start), c.duration)
		if !got.Equal(day(c.want)) {
			t.Errorf("AddTerm(%s, %s) = %s, want %s", c.start, c.duration, got.Format(time.RFC3339), c.want)
		}
	}
}

func TestRenewalCheck(t *testing.T) {
	t.Parallel()
	now := day("2025-06-01T12:00:00Z")
	window := 15 * 24 * time.Hour
	cases := []struct {
		name      string
		termEnd   time.Time
		tooEarly  bool
		wantStart time.Time
	}{
		{"exactly 15 days left", now.Add(window), false, now.Add(window)},
		{"15 days and a second left", now.Add(window + time.Second), true, time.Time{}},
		{"one day left", now.Add(24 * time.Hour), false, now.Add(24 * time.Hour)},
		{"ends now", now, false, now},
		{"expired yesterday", now.Add(-24 * time.Hour), false, now},
		{"a year left", now.AddDate(1, 0, 0), true, time.Time{}},
	}
	for _, c := range cases {
		start, tooEarly := RenewalCheck(now, c.termEnd, window)
		if tooEarly != c.tooEarly || !start.Equal(c.wantStart) {
			t.Errorf("%s: RenewalCheck = (%s, %v), want (%s, %v)", c.name, start, tooEarly, c.wantStart, c.tooEarly)
		}
	}
}
