package provision

import (
	"time"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// AddTerm returns the end of a term of the given duration starting at t: one
// calendar month or year later, clamped to the last day of a shorter month
// (Jan 31 + 1 month = Feb 28 or 29, never Mar 3; Feb 29 + 1 year = Feb 28).
func AddTerm(t time.Time, duration string) time.Time {
	months := 1
	if duration == protocol.Yearly {
		months = 12
	}
	return addMonths(t.UTC(), months)
}

func addMonths(t time.Time, n int) time.Time {
	y, m, d := t.Date()
	first := time.Date(y, m+time.Month(n), 1, 0, 0, 0, 0, time.UTC)
	if last := daysIn(first.Year(), first.Month()); d > last {
		d = last
	}
	hh, mm, ss := t.Clock()
	return time.Date(first.Year(), first.Month(), d, hh, mm, ss, t.Nanosecond(), time.UTC)
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// RenewalCheck applies the renewal window: a renewal is refused while more than
// window is left on the term ending at termEnd. It returns the start of the new
// term: the end of the current one, or now if that has already passed.
func RenewalCheck(now, termEnd time.Time, window time.Duration) (start time.Time, tooEarly bool) {
	if termEnd.Sub(now) > window {
		return time.Time{}, true
	}
	if termEnd.After(now) {
		return termEnd, false
	}
	return now, false
}
