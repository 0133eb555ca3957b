// Package idempotency keeps the idempotency records of SPEC section 3 in Redis.
// The gateway takes a record with SET NX PX and a random token before it enqueues
// a command; the worker that runs the command writes the result into the record
// (only while the token still holds it), so a retried call is answered from the
// record. Redis is an efficiency lock: PostgreSQL stays the truth.
package idempotency

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Outcome of taking a key.
type Outcome int

const (
	New        Outcome = iota // the caller holds the key and must run the command
	InProgress                // the same call is running
	Replay                    // the same call finished: replay its result
	Mismatch                  // the key was used with other params
)

// String names the outcome for metrics and logs.
func (o Outcome) String() string {
	return [...]string{"new", "in_progress", "replayed", "mismatch"}[o]
}

// PendingTTL bounds how long a taken key that has no result yet blocks retries:
// if a command never completes (dead-lettered, say), the partner can retry after it.
const PendingTTL = 15 * time.Minute

// Record values are "P <token> <fp>" while pending and
// "D <token> <fp> <status> <body>" once done, fields separated by NUL (which a
// JSON body cannot hold raw).
const sep = "\x00"

var (
	// acquireScript takes nothing once past its caller's deadline ARGV[3]
	// (Unix ms; 0: none): a take that reaches Redis late (held in a TCP
	// buffer while a link was cut, delivered when it healed) would hold the
	// key of a call already answered 503, refusing its retries as
	// in progress.
	acquireScript = redis.NewScript(`
local deadline = tonumber(ARGV[3])
if deadline > 0 then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > deadline then
    return redis.error_reply('LATE the take reached Redis after its deadline')
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])`)
	completeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == false or string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

// Store reads and writes idempotency records.
type Store struct {
	rdb      redis.Scripter       // the client itself
	cli      *redis.Client        // the same client, for plain commands
	pipe     *redis.AutoPipeliner // its automatic pipeline; nil when it has none
	inFlight atomic.Int32         // calls of this store under way
	ttl      time.Duration
}

// NewStore returns a store keeping finished results for ttl. While other calls
// of the store are under way, a call goes through the client's automatic
// pipeline: the records taken and completed by concurrent requests travel to
// Redis in one write and come back in one read. A lone call makes its round trip
// itself, without the hand-off to the pipeline's goroutine. Each call stays one
// atomic script, so batching changes no outcome.
func NewStore(rdb *redis.Client, ttl time.Duration) *Store {
	s := &Store{rdb: rdb, cli: rdb, ttl: ttl}
	if ap, err := rdb.AsyncAutoPipeline(); err == nil {
		s.pipe = ap
	}
	return s
}

// run runs script for one call, alone or pipelined with the calls under way.
func (s *Store) run(ctx context.Context, script *redis.Script, key string, args ...any) *redis.Cmd {
	defer s.inFlight.Add(-1)
	if s.inFlight.Add(1) > 1 && s.pipe != nil {
		return s.runPipelined(ctx, script, key, args...)
	}
	return script.Run(ctx, s.rdb, []string{key}, args...)
}

// runPipelined runs script through the automatic pipeline, waiting for it
// until ctx ends: a pipelined command does not heed its own context once
// queued, and while Redis is unreachable the batches ahead of it each wait
// for their read time-out. A script Redis does not know yet (NOSCRIPT) is
// sent whole on the client.
func (s *Store) runPipelined(ctx context.Context, script *redis.Script, key string, args ...any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, append([]any{"evalsha", script.Hash(), 1, key}, args...)...)
	if err := s.pipe.Submit(ctx, cmd).WaitContext(ctx); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// The batch may still fill cmd: answer with a command of our own.
			failed := redis.NewCmd(ctx)
			failed.SetErr(err)
			return failed
		}
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			return script.Run(ctx, s.cli, []string{key}, args...)
		}
	}
	return cmd
}

// Key is the Redis key of an idempotency key of one partner. Header keys and the
// keys derived from create calls live apart, and every key is scoped to the partner.
func Key(partner int64, key string, derived bool) string {
	kind := "h"
	if derived {
		kind = "d"
	}
	return "oo:idem:" + strconv.FormatInt(partner, 10) + ":" + kind + ":" + key
}

// ParseKey reads back a Redis key that Key built: the partner, the partner's
// key and whether it was derived. ok is false for any other string, so a
// worker can tell whether a key it reads off the queue belongs to the
// command's partner.
func ParseKey(redisKey string) (partner int64, key string, derived, ok bool) {
	parts := strings.SplitN(redisKey, ":", 5)
	if len(parts) != 5 || parts[3] != "h" && parts[3] != "d" {
		return 0, "", false, false
	}
	partner, err := strconv.ParseInt(parts[2], 10, 64)
	key, derived = parts[4], parts[3] == "d"
	// Built again, the key must come out the same: no other prefix, no
	// partner written as +7 or 007, no empty key.
	if err != nil || key == "" || Key(partner, key, derived) != redisKey {
		return 0, "", false, false
	}
	return partner, key, derived, true
}

// Derived reports whether a Redis key holds a key derived from a create call
// rather than a partner's Idempotency-Key header.
func Derived(key string) bool {
	parts := strings.SplitN(key, ":", 5)
	return len(parts) == 5 && parts[3] == "d"
}

// ValidHeaderKey applies SPEC section 1's rule for an Idempotency-Key header:
// 1 to 255 printable ASCII characters. The gateway checks it on the call, the
// worker again on the key it reads off the queue.
func ValidHeaderKey(k string) bool {
	if len(k) < 1 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// Fingerprint identifies a call's method and canonical params.
func Fingerprint(method string, canonical []byte) string {
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write(canonical)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// NewToken returns a random lock token.
func NewToken() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Result is a stored response.
type Result struct {
	Status int
	Body   []byte
}

// Acquire takes key for the call with fingerprint fp, or reports what holds it.
// Past ctx's deadline by Redis' clock, it takes nothing and fails: the caller
// has given up and answered by then (the clocks of the gateway and Redis are
// assumed within milliseconds of each other, as NTP keeps them).
func (s *Store) Acquire(ctx context.Context, key, token, fp string) (Outcome, Result, error) {
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixMilli()
	}
	v, err := s.run(ctx, acquireScript, key, pending(token, fp), PendingTTL.Milliseconds(), deadline).Text()
	if errors.Is(err, redis.Nil) {
		return New, Result{}, nil
	}
	if err != nil {
		return 0, Result{}, fmt.Errorf("idempotency acquire: %w", err)
	}
	return decode(v, fp)
}

func decode(v, fp string) (Outcome, Result, error) {
	parts := strings.SplitN(v, sep, 5)
	if len(parts) < 3 {
		return 0, Result{}, fmt.Errorf("idempotency: malformed record")
	}
	if parts[2] != fp {
		return Mismatch, Result{}, nil
	}
	if parts[0] == "P" || len(parts) < 5 {
		return InProgress, Result{}, nil
	}
	status, err := strconv.Atoi(parts[3])
	if err != nil {
		return 0, Result{}, fmt.Errorf("idempotency: malformed status: %w", err)
	}
	return Replay, Result{Status: status, Body: []byte(parts[4])}, nil
}

// Complete stores the result of the call holding key with token. It writes
// nothing when another holder took the key meanwhile (its own result will land).
func (s *Store) Complete(ctx context.Context, key, token, fp string, r Result) error {
	done := "D" + sep + token + sep + fp + sep + strconv.Itoa(r.Status) + sep + string(r.Body)
	prefix := "P" + sep + token + sep
	err := s.run(ctx, completeScript, key, prefix, done, s.ttl.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("idempotency complete: %w", err)
	}
	return nil
}

// Release frees a key still pending under token: the command was not enqueued,
// so the partner may retry at once.
func (s *Store) Release(ctx context.Context, key, token, fp string) error {
	if err := s.run(ctx, releaseScript, key, pending(token, fp)).Err(); err != nil {
		return fmt.Errorf("idempotency release: %w", err)
	}
	return nil
}

func pending(token, fp string) string { return "P" + sep + token + sep + fp }

// Keeps reports whether the result of a call under key, answered with
// status, is kept for replay. A refusal under a key derived from a create
// call (customer_not_found, renewal_too_early) is not: the marketplace's
// retry after the partner fixed the cause must run again rather than replay
// the refusal for a day. The gateway's record in Redis and the worker's
// ledger row both follow this rule.
func Keeps(key string, status int) bool {
	return key != "" && (status < http.StatusMultipleChoices || !Derived(key))
}
