package bench

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/oneoffice/provisioner/scripts/lab/load"
)

// Keys of the report rows, stable for the JSON output and the ratios.
const (
	keyCeiling       = "ceiling"
	keyCeilingSingle = "ceilingSingle"
	// The ceiling with the service's messages, and at the end-to-end rate.
	keyCeilingService       = "ceilingService"
	keyCeilingAtRate        = "ceilingAtRate"
	keyCeilingServiceAtRate = "ceilingServiceAtRate"
	keyE2E                  = "e2e"
	keyRate25               = "rate25"
	keyRate50               = "rate50"
	keyRate75               = "rate75"
	keySingle               = "single"
	keyMix16                = "mix16"
	keyMix64                = "mix64"
	keyMix256               = "mix256"
	keyMixRate80            = "mixRate80"
	keyPeerE2E              = "peerE2E"
	keyPeerRate50           = "peerRate50"
	keyPeerSingle           = "peerSingle"

	// The bare ceiling at 25% and 50% of the end-to-end rate: the broker's
	// own p99 where the provisioner's p99 targets are set.
	keyCeilingAt25 = "ceilingAt25"
	keyCeilingAt50 = "ceilingAt50"
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
	CPUPerReq float64        `json:"ownCpuMsPerReq,omitempty"` // gateway + workers; the peer's processes in its rows
	CPU       *CPU           `json:"cpu,omitempty"`
	// PerMessage is the commands per message the gateways published (their
	// publish_batch_commands histogram over the phase); 0 when they published none.
	PerMessage float64 `json:"commandsPerMessage,omitempty"`
}

// closedLoop is load.Closed as a row of the report.
func closedLoop(ctx context.Context, key, phase string, call load.Call, c int, d time.Duration) Row {
	return row(load.Closed(ctx, call, c, d), key, phase)
}

// openLoop is load.Open as a row of the report.
func openLoop(ctx context.Context, key, phase string, call load.Call, rate float64, d time.Duration, maxInFlight int) Row {
	r := row(load.Open(ctx, call, rate, d, maxInFlight), key, phase)
	r.Offered = rate
	return r
}

// row summarises what rec recorded.
func row(rec *load.Recorder, key, phase string) Row {
	lat, errs := rec.Latencies(false), rec.Labels()
	r := Row{Key: key, Phase: phase, OK: len(lat), Seconds: rec.Elapsed.Seconds(),
		P50: ms(load.Percentile(lat, 50)), P95: ms(load.Percentile(lat, 95)), P99: ms(load.Percentile(lat, 99))}
	if rec.Elapsed > 0 {
		r.Rate = float64(len(lat)) / rec.Elapsed.Seconds()
	}
	for _, n := range errs {
		r.Errors += n
	}
	if len(errs) > 0 {
		r.ErrorsBy = errs
	}
	return r
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
			Offered:    pick(func(r Row) float64 { return r.Offered }),
			Rate:       pick(func(r Row) float64 { return r.Rate }),
			OK:         int(math.Round(pick(func(r Row) float64 { return float64(r.OK) }))),
			Seconds:    pick(func(r Row) float64 { return r.Seconds }),
			P50:        pick(func(r Row) float64 { return r.P50 }),
			P95:        pick(func(r Row) float64 { return r.P95 }),
			P99:        pick(func(r Row) float64 { return r.P99 }),
			Errors:     int(math.Round(pick(func(r Row) float64 { return float64(r.Errors) }))),
			CPUPerReq:  pick(func(r Row) float64 { return r.CPUPerReq }),
			PerMessage: pick(func(r Row) float64 { return r.PerMessage }),
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
