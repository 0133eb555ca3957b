package provision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/oneoffice/provisioner/shared/idempotency"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/store"
)

// The command ledger (SPEC section 3): every mutating command is recorded
// under its command id in the transaction of its effect. The row is the last
// statement of that transaction and takes no lock before it, so the hot path
// pays one statement: a command already recorded (a redelivery) or a key
// another command answers for (Redis lost its record) conflicts there, the
// effect is rolled back, and the command is answered from the row it met.

var (
	// errRecorded reports that the ledger row conflicted with one already there.
	errRecorded = errors.New("command already in the ledger")
	// errAgain asks runCommand to run the command again: the row it met is
	// gone or was set aside (a failed run, an expired key).
	errAgain = errors.New("ledger row set aside; run again")
	// errInTx asks runCommand to run the handler in the command's transaction.
	errInTx = errors.New("run in the command's transaction")
)

// maxAttempts bounds the runs of one command through the ledger; only rows
// set aside between two of them make it run more than once.
const maxAttempts = 3

// runCommand runs a mutating command with its ledger row: in one transaction
// with its effect, after the shared statement of a batched method when that
// statement could not settle it. An API refusal rolls the effect back and is
// recorded on its own, so that a redelivery answers the same refusal.
func (s *Service) runCommand(ctx context.Context, rt *route, c *call) (protocol.Result, error) {
	if rt.run == batched {
		v, err := rt.h(ctx, nil, c)
		if err == nil {
			return encodeResult(c, v)
		}
		if !errors.Is(err, errInTx) {
			return protocol.Result{}, err
		}
	}
	for range maxAttempts {
		res, err := s.attempt(ctx, rt, c)
		if errors.Is(err, errRecorded) {
			c.ended = c.ended[:0] // the effect was rolled back, and its ends with it
			res, err = s.answerRecorded(ctx, c)
		}
		if !errors.Is(err, errAgain) {
			res.Ended = c.ended
			return res, err
		}
	}
	return protocol.Result{}, fmt.Errorf("ledger: command %s met a row set aside %d times", c.cmd.CommandID, maxAttempts)
}

// recorder is a response whose ledger copy leaves something out.
type recorder interface{ recorded() any }

// attempt runs the handler once in the command's own transaction and
// records the command in it after the effect.
func (s *Service) attempt(ctx context.Context, rt *route, c *call) (protocol.Result, error) {
	var res protocol.Result
	var refused *protocol.Error
	c.ended = c.ended[:0]
	err := store.WithTx(ctx, s.db, func(tx pgx.Tx) error {
		v, err := rt.h(ctx, tx, c)
		if err != nil {
			errors.As(err, &refused)
			return err
		}
		res, err = s.recordEffect(ctx, tx, c, v)
		return err
	})
	if refused == nil {
		return res, err
	}
	res = errorResult(refused, c.cmd.RequestID)
	c.ended = c.ended[:0]
	return res, s.record(ctx, s.db, c, "succeeded", res, c.ledgerKey(res.Status))
}

// recordEffect encodes the handler's answer v and records the command with
// it in tx, after its effect.
func (s *Service) recordEffect(ctx context.Context, tx pgx.Tx, c *call, v any) (protocol.Result, error) {
	res, err := encodeResult(c, v)
	if err != nil {
		return res, err
	}
	rec := res
	if r, ok := v.(recorder); ok {
		if rec, err = encodeResult(c, r.recorded()); err != nil {
			return res, err
		}
	}
	return res, s.record(ctx, tx, c, "succeeded", rec, c.ledgerKey(rec.Status))
}

// ledgerKey is the idempotency key the ledger answers for with a result of
// status: what Redis keeps. A refusal under a key derived from a create call
// is not kept, so the call runs again once the partner fixed the cause.
func (c *call) ledgerKey(status int) string {
	if !idempotency.Keeps(c.cmd.IdemKey, status) {
		return ""
	}
	return c.cmd.IdemKey
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

const recordSQL = `INSERT INTO command_ledger (partner_id, command_id, method, request_fp, idem_key,
	request_id, trace_id, status, response_status, response_body, created_at, order_id)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING`

// record writes the command's ledger row; errRecorded when its command id or
// its key is there already.
func (s *Service) record(ctx context.Context, q execer, c *call, status string, res protocol.Result, key string) error {
	tag, err := q.Exec(ctx, recordSQL, c.partner, c.cmd.CommandID, c.def.Name, c.fp, nullable(key),
		c.cmd.RequestID, nullable(c.cmd.TraceID), status, res.Status, res.Body, received(c),
		nullable(c.def.OrderID(c.params)))
	if err == nil && tag.RowsAffected() == 0 {
		return errRecorded
	}
	return err
}

// received is when the gateway took the call, or the worker's clock for a
// message without a timestamp.
func received(c *call) time.Time {
	if c.cmd.Timestamp.IsZero() {
		return c.now
	}
	return c.cmd.Timestamp
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// answerRecorded answers a command whose ledger row met one already there:
// its own (a redelivery: the recorded answer), or another command's under
// the same idempotency key (the same params: that answer, replayed; other
// params: the refusal the gateway gives for a reused key).
func (s *Service) answerRecorded(ctx context.Context, c *call) (protocol.Result, error) {
	var id, status, fp string
	var res protocol.Result
	var completed time.Time
	err := store.NoRows(s.db.QueryRow(ctx, `SELECT command_id, status, response_status, response_body,
		request_fp, completed_at FROM command_ledger
		WHERE partner_id = $1 AND (command_id = $2 OR idem_key = $3)
		ORDER BY command_id = $2 DESC LIMIT 1`, c.partner, c.cmd.CommandID, nullable(c.cmd.IdemKey)).
		Scan(&id, &status, &res.Status, &res.Body, &fp, &completed))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return res, errAgain // pruned or released meanwhile
	case err != nil:
		return res, err
	case id == c.cmd.CommandID && status == "failed":
		// A run that failed (answered 500) is run again when the message is
		// replayed from the dead-letter queue.
		_, err := s.db.Exec(ctx, `DELETE FROM command_ledger WHERE partner_id = $1 AND command_id = $2
			AND status = 'failed'`, c.partner, id)
		return protocol.Result{}, errors.Join(err, errAgain)
	case id == c.cmd.CommandID:
		return res, nil
	case s.cfg.KeyTTL > 0 && c.now.Sub(completed) > s.cfg.KeyTTL:
		// Redis keeps a result IDEMPOTENCY_TTL, and so does the ledger.
		_, err := s.db.Exec(ctx, `UPDATE command_ledger SET idem_key = NULL WHERE partner_id = $1 AND command_id = $2`,
			c.partner, id)
		return protocol.Result{}, errors.Join(err, errAgain)
	}
	if fp == c.fp {
		res.Replayed = true
	} else {
		res = errorResult(keyReused(c), c.cmd.RequestID)
	}
	// This command is recorded too, for getRequest, without the key it does
	// not own. A conflict here is its own redelivery racing it: harmless.
	if err := s.record(ctx, s.db, c, "succeeded", res, ""); err != nil && !errors.Is(err, errRecorded) {
		return protocol.Result{}, err
	}
	return res, nil
}

// keyReused is the gateway's refusal of a key used with other params.
func keyReused(c *call) *protocol.Error {
	return protocol.KeyReused(idempotency.Derived(c.cmd.IdemKey), c.def.KeyField)
}

// endKey stops the ledger answering for key: the resource it created is gone.
func endKey(ctx context.Context, tx pgx.Tx, partner int64, key string) error {
	_, err := tx.Exec(ctx, `UPDATE command_ledger SET idem_key = NULL WHERE partner_id = $1 AND idem_key = $2`,
		partner, key)
	return err
}

// Failed records a mutating command that failed permanently with its answer
// (500 internal), so that getRequest tells it. A replay of the message from
// the dead-letter queue runs it again (answerRecorded).
func (s *Service) Failed(ctx context.Context, cmd *protocol.Command, res protocol.Result) error {
	m := cmd.Def
	if m == nil {
		m, _ = protocol.Lookup(cmd.Method) // a command built without DecodeCommand
	}
	if m == nil || !m.Mutates || cmd.CommandID == "" {
		return nil
	}
	c := &call{partner: cmd.Partner, def: m, now: s.now(), cmd: cmd, params: cmd.Decoded,
		fp: idempotency.Fingerprint(cmd.Method, cmd.Params)}
	if c.params == nil {
		if p, perr := m.Decode(cmd.Params); perr == nil {
			c.params = p // for the order its event names
		}
	}
	if err := s.record(ctx, s.db, c, "failed", res, ""); err != nil && !errors.Is(err, errRecorded) {
		return err
	}
	return nil
}
