package idempotency

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// endScript deletes a finished record only: a record still pending belongs to
// a call under way, whose holder completes or releases it.
var endScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'D' then return redis.call('DEL', KEYS[1]) end
return 0`)

// End deletes the finished record of key: the resource its call created is
// gone (a derived key ends with the resource it created, SPEC section 3), so
// the same call again must run again rather than replay the old answer.
func (s *Store) End(ctx context.Context, key string) error {
	if err := s.run(ctx, endScript, key).Err(); err != nil {
		return fmt.Errorf("idempotency end: %w", err)
	}
	return nil
}

// PendingCall is a call the gateway answered 202: queued, not run yet.
type PendingCall struct {
	Method string
	At     time.Time
}

// pendingKey is the Redis key of the 202 marker of one partner's request id.
func pendingKey(partner int64, requestID string) string {
	return "oo:pending:" + strconv.FormatInt(partner, 10) + ":" + requestID
}

// MarkPending records that the gateway answered the call requestID of partner
// 202, so that getRequest can tell "pending" from "unknown" until the worker
// records the call in its ledger. The marker lasts as long as a finished
// result (the store's time to live); it is cheap, and only 202 answers write it.
func (s *Store) MarkPending(ctx context.Context, partner int64, requestID, method string, at time.Time) error {
	v := method + sep + strconv.FormatInt(at.Unix(), 10)
	if err := s.cli.Set(ctx, pendingKey(partner, requestID), v, s.ttl).Err(); err != nil {
		return fmt.Errorf("idempotency mark pending: %w", err)
	}
	return nil
}

// Pending reads the 202 marker of partner's call requestID; ok is false when
// there is none.
func (s *Store) Pending(ctx context.Context, partner int64, requestID string) (PendingCall, bool, error) {
	v, err := s.cli.Get(ctx, pendingKey(partner, requestID)).Result()
	if err == redis.Nil {
		return PendingCall{}, false, nil
	}
	if err != nil {
		return PendingCall{}, false, fmt.Errorf("idempotency pending: %w", err)
	}
	method, at, found := strings.Cut(v, sep)
	sec, perr := strconv.ParseInt(at, 10, 64)
	if !found || perr != nil {
		return PendingCall{}, false, fmt.Errorf("idempotency pending: malformed marker")
	}
	return PendingCall{Method: method, At: time.Unix(sec, 0).UTC()}, true, nil
}
