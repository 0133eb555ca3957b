package provision

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// Group commit. The commands that run in a transaction (inTx) and reach it
// while the worker's transactions are all busy queue up; the next transaction
// runs all of them, each in its own savepoint, and commits them with one
// COMMIT and one WAL flush, which is most of what a small command costs the
// database. Each command's effect and ledger row (the webhook outbox reads the
// ledger) are in that transaction, as when it runs alone, and each gets its
// own answer. A lone command runs at once, alone, exactly as without groups:
// nothing waits for company.
//
// Failure modes:
//   - A command whose handler refuses (404, 409, 422) or fails is rolled back
//     to its savepoint; the others go on. A refusal is recorded in the group,
//     as it is after its own rollback alone; a failure is the command's own
//     (the consumer retries it if transient, as ever).
//   - A deadlock or serialization failure is one statement's: its command is
//     rolled back to its savepoint and fails with the transient error, which
//     the consumer retries in a later group; the rest commit.
//   - A group that cannot go on (BEGIN, a savepoint or COMMIT failed, the
//     connection broke) gives every command back to run alone, as without
//     groups. If the COMMIT did happen unseen, the ledger row each command
//     meets answers it from the first run: nothing is applied twice.
//   - A handler that panics is rolled back to its savepoint, and the panic is
//     raised again in the command's own goroutine, where the consumer
//     dead-letters it.
const (
	// groupLanes bounds the group transactions running at once per worker:
	// while one waits for its WAL flush others run, and a command finds a
	// lane free or waits for one group, not for a queue of them. Four of
	// DATABASE_MAX_CONNS' default ten; BenchmarkOrderCommands found 4 lanes
	// no slower than 1 or 2 (on a loaded machine, within its noise).
	groupLanes = 4
	// maxGroup bounds the commands of one transaction, and so the wait of
	// the last of them for the others run before it on one connection.
	maxGroup = 16
)

// errGroupFailed tells a command that its group could not commit: it runs
// again alone.
var errGroupFailed = errors.New("command group failed")

// member is one command waiting for, or run in, a group.
type member struct {
	ctx context.Context
	rt  *route
	c   *call

	res      protocol.Result
	err      error
	panicked any // a handler's panic, raised again in the command's goroutine
	// wake receives true when the command is to lead the next group, false
	// when another command's group settled it.
	wake chan bool
}

// grouper runs inTx commands in groups.
type grouper struct {
	s       *Service
	db      *pgxpool.Pool
	lanes   int
	maxSize int

	mu      sync.Mutex
	queue   []*member
	running int // groups running or about to

	size   prometheus.Histogram // commands per transaction
	broken prometheus.Counter   // groups whose commands ran again alone
}

func newGrouper(s *Service, db *pgxpool.Pool, m *Metrics) *grouper {
	return &grouper{s: s, db: db, lanes: groupLanes, maxSize: maxGroup, size: m.groupSize, broken: m.groupsBroken}
}

// run runs c once through the ledger, in a group or alone, and returns its
// outcome as attempt does.
func (g *grouper) run(ctx context.Context, rt *route, c *call) (protocol.Result, error) {
	m := &member{ctx: ctx, rt: rt, c: c, wake: make(chan bool, 1)}
	g.mu.Lock()
	if g.running < g.lanes {
		g.running++
		g.mu.Unlock()
		g.lead(ctx, m)
	} else {
		g.queue = append(g.queue, m)
		g.mu.Unlock()
		if <-m.wake {
			g.lead(ctx, m)
		}
	}
	if m.panicked != nil {
		panic(m.panicked)
	}
	if errors.Is(m.err, errGroupFailed) {
		return g.s.attemptAlone(ctx, rt, c)
	}
	return m.res, m.err
}

// lead runs one group of m and the commands queued before it. Whatever
// happens in it, the others are then woken and the lane handed on: a command
// never waits for a group that will not come.
func (g *grouper) lead(ctx context.Context, m *member) {
	g.mu.Lock()
	k := min(len(g.queue), g.maxSize-1)
	batch := make([]*member, 0, k+1)
	batch = append(append(batch, m), g.queue[:k]...)
	g.queue = slices.Delete(g.queue, 0, k)
	g.mu.Unlock()
	defer g.handOn(m, batch)
	for _, b := range batch {
		b.err = errGroupFailed
	}
	g.size.Observe(float64(len(batch)))
	if len(batch) == 1 {
		// Alone: no savepoint, its own transaction, at once.
		func() {
			defer func() {
				if r := recover(); r != nil {
					m.panicked = r
				}
			}()
			m.res, m.err = g.s.attemptAlone(m.ctx, m.rt, m.c)
		}()
		return
	}
	g.runGroup(ctx, batch)
}

// handOn wakes the commands the leader m settled, then gives the lane to the
// oldest command still queued, or frees it.
func (g *grouper) handOn(m *member, batch []*member) {
	for _, b := range batch {
		if b != m {
			b.wake <- false
		}
	}
	g.release()
}

// release gives the lane to the oldest queued command, or frees it.
func (g *grouper) release() {
	g.mu.Lock()
	if len(g.queue) == 0 {
		g.running--
		g.mu.Unlock()
		return
	}
	next := g.queue[0]
	g.queue = slices.Delete(g.queue, 0, 1)
	g.mu.Unlock()
	next.wake <- true
}

// groupKey orders a group: by partner and the order or resource its command
// names, so that two groups take their row locks in one order and seldom
// deadlock. The sort is stable: commands on one order keep the order in
// which they reached the group.
func groupKey(m *member) (int64, string) {
	c := m.c
	if id := c.def.OrderID(c.params); id != "" {
		return c.partner, id
	}
	return c.partner, ""
}

// runGroup runs the batch in one transaction, one savepoint per command, and
// commits it. A command it settles gets its outcome; the others keep
// errGroupFailed and run again alone.
func (g *grouper) runGroup(ctx context.Context, batch []*member) {
	slices.SortStableFunc(batch, func(a, b *member) int {
		pa, ka := groupKey(a)
		pb, kb := groupKey(b)
		return cmp.Or(cmp.Compare(pa, pb), cmp.Compare(ka, kb))
	})
	tx, err := g.db.Begin(ctx)
	if err != nil {
		g.fail(batch)
		return
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after a commit it does nothing
	for i, m := range batch {
		// One round trip: the previous command's savepoint released, this
		// one's taken. Released savepoints keep the transaction one level deep.
		sp := "SAVEPOINT cmd"
		if i > 0 {
			sp = "RELEASE SAVEPOINT cmd; SAVEPOINT cmd"
		}
		if _, err := tx.Exec(ctx, sp); err != nil {
			g.fail(batch)
			return
		}
		if !g.runOne(ctx, tx, m) {
			g.fail(batch)
			return
		}
	}
	if err := tx.Commit(ctx); err != nil {
		g.fail(batch)
	}
}

// fail gives every command of a broken group back to run alone; a panic stays
// its command's.
func (g *grouper) fail(batch []*member) {
	g.broken.Inc()
	for _, m := range batch {
		if m.panicked == nil {
			m.res, m.err = protocol.Result{}, errGroupFailed
		}
	}
}

// runOne runs m in the group's transaction, inside its savepoint, and sets
// its outcome; false when the transaction can no longer go on.
func (g *grouper) runOne(ctx context.Context, tx pgx.Tx, m *member) (ok bool) {
	c := m.c
	c.ended = c.ended[:0]
	undo := func() bool {
		c.ended = c.ended[:0]
		_, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT cmd")
		return err == nil
	}
	var refused *protocol.Error
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				m.panicked = r
				err = fmt.Errorf("%w: %v", errPanicked, r)
			}
		}()
		v, err := m.rt.h(m.ctx, tx, c)
		if err != nil {
			errors.As(err, &refused)
			return err
		}
		m.res, err = g.s.recordEffect(m.ctx, tx, c, v)
		return err
	}()
	if err == nil {
		m.err = nil
		return true
	}
	if !undo() {
		return false
	}
	if refused == nil {
		// errRecorded (answered once the group committed), a failure of the
		// command's own, or its panic.
		m.res, m.err = protocol.Result{}, err
		return true
	}
	// A refusal is recorded on its own, its effect rolled back, so that a
	// redelivery answers the same refusal.
	m.res = errorResult(refused, c.cmd.RequestID)
	m.err = g.s.record(m.ctx, tx, c, "succeeded", m.res, c.ledgerKey(m.res.Status))
	if m.err != nil && !errors.Is(m.err, errRecorded) {
		return undo()
	}
	return true
}

// errPanicked marks a command whose handler panicked in another command's
// group; the panic itself is raised again in its goroutine.
var errPanicked = errors.New("handler panicked in a group")
