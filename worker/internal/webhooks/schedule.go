package webhooks

import (
	"math/rand/v2"
	"time"
)

// jitter spreads each pause by up to this fraction either way, so that the
// events of an endpoint that was down do not come back all at once.
const jitter = 0.2

// Schedule is the back-off of the retries: the pause after the n-th failed
// attempt is Min doubled n-1 times, at most Max, with a jitter of +-20%,
// and an event is retried until For after its window opened.
type Schedule struct {
	Min, Max, For time.Duration
}

// pause is the nominal pause after the attempt-th failed attempt (1-based).
func (s Schedule) pause(attempt int) time.Duration {
	d := s.Min
	for i := 1; i < attempt && d < s.Max; i++ {
		d *= 2
	}
	return min(d, s.Max)
}

// Next is when the event whose window opened at from is tried again after
// its attempt-th attempt failed at now; ok is false when that is past the
// window, and the event fails.
func (s Schedule) Next(from, now time.Time, attempt int) (time.Time, bool) {
	d := s.pause(attempt)
	d += time.Duration((rand.Float64()*2 - 1) * jitter * float64(d))
	next := now.Add(d)
	return next, next.Before(from.Add(s.For))
}
