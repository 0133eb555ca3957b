package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oneoffice/provisioner/scripts/lab/load"
	"github.com/oneoffice/provisioner/shared/deps"
	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// IdemResult is the cost of the idempotency step, measured in process against
// the stack's Redis with the service's own Store: Acquire of a fresh key (the
// gateway's step), then Complete with a createCustomer-sized result (the
// worker's step).
type IdemResult struct {
	Concurrency int `json:"concurrency"`
	Acquire     Row `json:"acquire"`
	Complete    Row `json:"complete"`
	// The same with a single caller, to set against the single-caller phase.
	SingleAcquire  Row `json:"singleAcquire"`
	SingleComplete Row `json:"singleComplete"`
}

// idemBenchPartner is a partner id no real partner of the stack has.
const idemBenchPartner = 999999

func idempotencyPhase(ctx context.Context, redisURL string, cfg config) (*IdemResult, error) {
	// Pool as large as the callers, so the figures are Redis round trips and
	// not waits for a pooled connection.
	rdb, err := deps.OpenRedis(redisURL, cfg.c)
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	store := idempotency.NewStore(rdb, 24*time.Hour)
	var seq atomic.Uint64
	res := &IdemResult{Concurrency: cfg.c}
	res.Acquire, res.Complete = idemLoop(ctx, store, &seq, cfg.c, cfg.idemDuration)
	res.SingleAcquire, res.SingleComplete = idemLoop(ctx, store, &seq, 1, min(cfg.idemDuration, 3*time.Second))
	if res.Acquire.OK == 0 || res.Complete.OK == 0 {
		return nil, fmt.Errorf("no idempotency step succeeded (acquire errors %v, complete errors %v)",
			res.Acquire.ErrorsBy, res.Complete.ErrorsBy)
	}
	return res, ctx.Err()
}

// idemLoop runs Acquire then Complete on fresh keys with c callers for d.
func idemLoop(ctx context.Context, store *idempotency.Store, seq *atomic.Uint64, c int, d time.Duration) (acquire, complete Row) {
	acq, cmp := load.NewRecorder(), load.NewRecorder()
	fp := idempotency.Fingerprint(protocol.CreateCustomer, ceilingRequest)
	result := idempotency.Result{Status: 200, Body: ceilingReply}
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(end) {
				key := idempotency.Key(idemBenchPartner, "customer:bench-"+strconv.FormatUint(seq.Add(1), 10), true)
				token := idempotency.NewToken()
				t := time.Now()
				outcome, _, err := store.Acquire(ctx, key, token, fp)
				acq.Add(idemLabel(err, outcome), time.Since(t))
				if err != nil || outcome != idempotency.New {
					continue
				}
				t = time.Now()
				err = store.Complete(ctx, key, token, fp, result)
				cmp.Add(idemLabel(err, idempotency.New), time.Since(t))
			}
		})
	}
	wg.Wait()
	acq.Elapsed = time.Since(start)
	cmp.Elapsed = acq.Elapsed
	phase := fmt.Sprintf("c=%d", c)
	return row(acq, "acquire", "Acquire "+phase), row(cmp, "complete", "Complete "+phase)
}

func idemLabel(err error, outcome idempotency.Outcome) string {
	switch {
	case err != nil:
		return "redis"
	case outcome != idempotency.New:
		return outcome.String()
	}
	return ""
}
