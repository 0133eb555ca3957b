// Package load is the lab's load generator: calls in a closed loop (a
// number in flight) or an open loop (a fixed arrival rate), their outcomes
// and latencies recorded, and the one percentile code of the lab.
package load

import (
	"context"
	"maps"
	"math"
	"slices"
	"sync"
	"time"
)

// Call makes one call and returns "" on success or a label for the outcome
// otherwise (an HTTP status, "timeout", ...).
type Call func(ctx context.Context) string

// Shed is the label of a call an open loop did not send: its in-flight
// bound was reached.
const Shed = "shed"

// Recorder collects the outcomes of concurrent calls.
type Recorder struct {
	mu      sync.Mutex
	ok      []time.Duration // successes
	all     []time.Duration // every call sent
	labels  map[string]int  // the calls that were not successes, by label
	Elapsed time.Duration   // set by the loop that ran the calls
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{labels: map[string]int{}} }

// Add records one call that took d: label "" is a success.
func (r *Recorder) Add(label string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if label == Shed {
		r.labels[Shed]++
		return
	}
	r.all = append(r.all, d)
	if label == "" {
		r.ok = append(r.ok, d)
		return
	}
	r.labels[label]++
}

// Latencies are those of the successes, or of every call sent, sorted.
func (r *Recorder) Latencies(all bool) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := slices.Clone(r.ok)
	if all {
		lat = slices.Clone(r.all)
	}
	slices.Sort(lat)
	return lat
}

// Labels counts the calls that were not successes, by label (Shed too).
func (r *Recorder) Labels() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.labels)
}

// Percentile is the nearest-rank p-th percentile of sorted, 0 when empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Closed keeps c calls in flight for d: each of c callers sends its next
// call as soon as the previous one is answered.
func Closed(ctx context.Context, call Call, c int, d time.Duration) *Recorder {
	rec := NewRecorder()
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(end) {
				t := time.Now()
				rec.Add(call(ctx), time.Since(t))
			}
		})
	}
	wg.Wait()
	rec.Elapsed = time.Since(start)
	return rec
}

// Open sends calls at rate per second for d (or until ctx ends) whatever
// the answers, each in its own goroutine, with at most maxInFlight
// outstanding: a call due when the bound is reached is not sent and counts
// as Shed. Latency is measured from the time a call was due, so a late
// pacer shows up in it.
func Open(ctx context.Context, call Call, rate float64, d time.Duration, maxInFlight int) *Recorder {
	rec := NewRecorder()
	if rate <= 0 {
		rec.Add("no rate", 0)
		return rec
	}
	interval := time.Duration(float64(time.Second) / rate)
	slots := make(chan struct{}, maxInFlight)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var wg sync.WaitGroup
	start := time.Now()
	for due := start; due.Before(start.Add(d)); due = due.Add(interval) {
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case slots <- struct{}{}:
		default:
			rec.Add(Shed, 0)
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			rec.Add(call(ctx), time.Since(due))
		})
	}
	wg.Wait()
	rec.Elapsed = min(time.Since(start), d)
	return rec
}
