package api

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter keeps one token bucket per API key (burst: one second's worth).
type limiter struct {
	rps     float64
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiter(rps float64) *limiter {
	return &limiter{rps: rps, buckets: make(map[string]*rate.Limiter)}
}

// allow reports whether key may make a call now, and if not, how long to wait.
func (l *limiter) allow(key string) (bool, time.Duration) {
	if l.rps <= 0 {
		return true, 0
	}
	l.mu.Lock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= 100_000 {
			clear(l.buckets)
		}
		b = rate.NewLimiter(rate.Limit(l.rps), int(math.Max(1, math.Ceil(l.rps))))
		l.buckets[key] = b
	}
	l.mu.Unlock()
	r := b.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d
	}
	return true, 0
}
