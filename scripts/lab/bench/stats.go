package bench

import (
	"maps"
	"math"
	"slices"
	"sync"
	"time"
)

// Keys of the report rows, stable for the JSON output and the ratios.
const (
	keyCeiling       = "ceiling"
	keyCeilingSingle = "ceilingSingle"
	keyE2E           = "e2e"
	keyRate25        = "rate25"
	keyRate50        = "rate50"
	keyRate75        = "rate75"
	keySingle        = "single"
)

// Row is the result of one phase. Latencies are in milliseconds and cover the
// successful calls; failures are counted by label (HTTP status, "transport",
// "timeout", "shed" when the open loop's in-flight bound was hit, ...).
type Row struct {
	Key       string         `json:"key"`
	Phase     string         `json:"phase"`
	Offered   float64        `json:"offeredPerSec,omitempty"` // open loop only
	Rate      float64        `json:"okPerSec"`
	OK        int            `json:"ok"`
	Seconds   float64        `json:"seconds"`
	P50       float64        `json:"p50Ms"`
	P95       float64        `json:"p95Ms"`
	P99       float64        `json:"p99Ms"`
	Errors    int            `json:"errors"`
	ErrorsBy  map[string]int `json:"errorsBy,omitempty"`
	CPUPerReq float64        `json:"ownCpuMsPerReq,omitempty"` // gateway + workers
	CPU       *CPU           `json:"cpu,omitempty"`
}

// recorder collects the outcomes of concurrent calls.
type recorder struct {
	mu   sync.Mutex
	lat  []time.Duration
	errs map[string]int
}

func newRecorder() *recorder { return &recorder{errs: make(map[string]int)} }

// add records one call: label "" is a success that took d.
func (r *recorder) add(label string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if label == "" {
		r.lat = append(r.lat, d)
		return
	}
	r.errs[label]++
}

// row summarises what was recorded over elapsed.
func (r *recorder) row(key, phase string, elapsed time.Duration) Row {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := slices.Clone(r.lat)
	slices.Sort(lat)
	row := Row{Key: key, Phase: phase, OK: len(lat), Seconds: elapsed.Seconds(),
		P50: ms(percentile(lat, 50)), P95: ms(percentile(lat, 95)), P99: ms(percentile(lat, 99))}
	if elapsed > 0 {
		row.Rate = float64(len(lat)) / elapsed.Seconds()
	}
	for _, n := range r.errs {
		row.Errors += n
	}
	if len(r.errs) > 0 {
		row.ErrorsBy = maps.Clone(r.errs)
	}
	return row
}

// percentile is the nearest-rank p-th percentile of sorted, 0 when empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// median of xs, 0 when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianRows is, row by row, the median of every figure over the runs.
func medianRows(runs [][]Row) []Row {
	if len(runs) == 0 {
		return nil
	}
	out := make([]Row, len(runs[0]))
	for i, first := range runs[0] {
		pick := func(f func(Row) float64) float64 {
			var xs []float64
			for _, rows := range runs {
				if i < len(rows) {
					xs = append(xs, f(rows[i]))
				}
			}
			return median(xs)
		}
		out[i] = Row{
			Key: first.Key, Phase: first.Phase,
			Offered:   pick(func(r Row) float64 { return r.Offered }),
			Rate:      pick(func(r Row) float64 { return r.Rate }),
			OK:        int(math.Round(pick(func(r Row) float64 { return float64(r.OK) }))),
			Seconds:   pick(func(r Row) float64 { return r.Seconds }),
			P50:       pick(func(r Row) float64 { return r.P50 }),
			P95:       pick(func(r Row) float64 { return r.P95 }),
			P99:       pick(func(r Row) float64 { return r.P99 }),
			Errors:    int(math.Round(pick(func(r Row) float64 { return float64(r.Errors) }))),
			CPUPerReq: pick(func(r Row) float64 { return r.CPUPerReq }),
		}
	}
	return out
}

// find returns the row with key.
func find(rows []Row, key string) (Row, bool) {
	for _, r := range rows {
		if r.Key == key {
			return r, true
		}
	}
	return Row{}, false
}
