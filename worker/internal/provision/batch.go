package provision

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/reads"
	"github.com/oneoffice/provisioner/shared/tracing"
)

// Customer inserts are grouped: while a statement runs, the createCustomer
// commands that reach the insert queue up, and the next statement inserts all of
// them at once with one commit. A lone command is inserted at once, alone, so
// batching adds no wait; under load one statement and one WAL flush serve many
// commands, which is most of what the database spends on a createCustomer.
const (
	// insertLanes bounds the customer insert statements running at once per
	// worker. One lane batches the most: in the bench at saturation it gave 4.4
	// rows per statement against 3.0 with two lanes, and PostgreSQL 0.12 ms of
	// CPU per createCustomer against 0.17. Other methods do not queue here.
	insertLanes = 1
	// maxBatchRows bounds the rows of one statement.
	maxBatchRows = 64
)

// errBatchFailed tells a command that the statement it was part of failed: it
// then runs alone, so one bad row or a deadlock between batches cannot fail the
// others.
var errBatchFailed = errors.New("customer batch insert failed")

// newCustomer is one createCustomer insert and, once its statement ran, its
// outcome.
type newCustomer struct {
	partner int64
	params  *protocol.CreateCustomerParams
	path    string // storage location as recorded (storageURI)
	fp      string
	now     time.Time
	cmd     *protocol.Command
	// suffix is the response body after its leading {"id":N, which only the
	// insert knows: the statement writes the ledger row's body from it, and
	// the command answers the same bytes.
	suffix string

	body     []byte // the response, once inserted
	inserted bool   // false: the (partner, id) existed before, nothing was inserted
	err      error
	// wake receives true when the command is to run the next statement, false
	// when another command's statement settled it.
	wake chan bool
	// leader is the span of the command whose statement inserted this one,
	// for the link from its wait (waitSpan).
	leader trace.SpanContext
}

var newCustomers = sync.Pool{New: func() any { return &newCustomer{wake: make(chan bool, 1)} }}

// inserter groups customer inserts into statements.
type inserter struct {
	db      *pgxpool.Pool
	lanes   int
	maxRows int

	mu      sync.Mutex
	queue   []*newCustomer
	running int // statements running or about to

	rows prometheus.Histogram // per statement
}

func newInserter(db *pgxpool.Pool, rows prometheus.Histogram) *inserter {
	return &inserter{db: db, lanes: insertLanes, maxRows: maxBatchRows, rows: rows}
}

// insert inserts n's row, alone or with others, and sets its outcome.
func (in *inserter) insert(ctx context.Context, n *newCustomer) {
	in.mu.Lock()
	if in.running < in.lanes {
		in.running++
		in.mu.Unlock()
		in.lead(ctx, n)
		return
	}
	in.queue = append(in.queue, n)
	in.mu.Unlock()
	wait := waitSpan(ctx)
	lead := <-n.wake
	if wait.IsRecording() {
		if !lead {
			wait.AddLink(trace.Link{SpanContext: n.leader})
		}
		wait.End()
	}
	if lead {
		in.lead(ctx, n)
	}
}

// waitSpan is the span of a command queued behind another's statement, so
// that its trace shows the wait; once another command's statement inserted
// it, the span links to that command's, where the statement is. Not traced,
// it is the context's span, left alone.
func waitSpan(ctx context.Context) trace.Span {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return span
	}
	_, wait := span.TracerProvider().Tracer(tracing.Scope).Start(ctx, "createCustomer insert queue")
	return wait
}

// lead runs one statement for n and the commands queued before it. Whatever
// happens in it, a panic included, the others are then woken and the lane is
// handed on: a command never waits for a statement that will not come.
func (in *inserter) lead(ctx context.Context, n *newCustomer) {
	in.mu.Lock()
	k := min(len(in.queue), in.maxRows-1)
	batch := make([]*newCustomer, 0, k+1)
	batch = append(append(batch, n), in.queue[:k]...)
	in.queue = slices.Delete(in.queue, 0, k)
	in.mu.Unlock()
	leader := trace.SpanContextFromContext(ctx)
	for _, m := range batch {
		m.body, m.inserted, m.err, m.leader = nil, false, errBatchFailed, leader
	}
	defer in.handOn(n, batch)
	in.run(ctx, batch)
}

// handOn wakes the commands the leader n settled, then gives the lane to the
// oldest command still queued, or frees it.
func (in *inserter) handOn(n *newCustomer, batch []*newCustomer) {
	for _, m := range batch {
		if m != n {
			m.wake <- false
		}
	}
	in.mu.Lock()
	if len(in.queue) == 0 {
		in.running--
		in.mu.Unlock()
		return
	}
	next := in.queue[0]
	in.queue = slices.Delete(in.queue, 0, 1)
	in.mu.Unlock()
	next.wake <- true
}

// run inserts the batch and sets each command's outcome; a command it could not
// settle keeps errBatchFailed.
func (in *inserter) run(ctx context.Context, batch []*newCustomer) {
	in.rows.Observe(float64(len(batch)))
	if len(batch) == 1 {
		n := batch[0]
		var got map[string]insertedCustomer
		got, n.err = insertCustomers(ctx, in.db, batch, true)
		if c, ok := got[n.cmd.CommandID]; ok {
			n.body, n.inserted = c.body, true
		}
		return
	}
	// Rows in one order, so that two statements inserting the same ids take
	// their index locks in the same order and cannot deadlock.
	slices.SortFunc(batch, func(a, b *newCustomer) int {
		return cmp.Or(cmp.Compare(a.partner, b.partner), cmp.Compare(a.params.ID, b.params.ID))
	})
	got, err := insertCustomers(ctx, in.db, batch, true)
	if err != nil {
		return // each command keeps errBatchFailed and runs alone
	}
	for _, n := range batch {
		n.err = nil
		// Of the same id twice, the row names the command it was inserted
		// for; the other finds the customer existing.
		if c, ok := got[n.cmd.CommandID]; ok {
			n.body, n.inserted = c.body, true
		}
	}
}

// insertedCustomer is a row a statement inserted: the customer and the
// response body the ledger recorded for it.
type insertedCustomer struct {
	reads.Customer
	body []byte
}

// responseSuffix is the createCustomer response of n after its leading
// {"id":N: every field but the number is the params' own.
func responseSuffix(n *newCustomer) (string, error) {
	p := n.params
	b, err := json.Marshal(reads.Customer{RemoteID: p.ID, Name: p.Name, Partner: n.partner,
		CreatedAt: n.now.Unix(), IsActive: true, Admin: *p.Admin})
	if err != nil || !bytes.HasPrefix(b, idPrefix) {
		return "", fmt.Errorf("encode createCustomer result: %v", err)
	}
	return string(b[len(idPrefix):]), nil
}

// idPrefix is how a Customer with no number starts; the statement puts the
// number in its place.
var idPrefix = []byte(`{"id":0`)

// insertCustomersSQL inserts customers and numbers them within their
// partners: it drops the second of two rows with the same id, adds the count
// of the rest to each partner's counter, in partner order so that two
// statements lock the counters in one order, and numbers each partner's rows
// from there. The counter row stays locked until the statement commits, so a
// statement numbers after the last committed one, and a failed statement
// gives its numbers back. A row whose id the partner already has takes a
// number that ON CONFLICT then leaves unused: a gap in that partner's numbers,
// which only its own repeated calls make. Skipping such rows before counting
// would take an index probe per row that the planner turns into a scan of all
// tenants while the table has no statistics (a fresh database, a benchmark),
// and cost half as much again as the insert with statistics.
const insertCustomersSQL = `WITH n AS (
		SELECT DISTINCT ON (n.partner_id, n.remote_id) n.*
		FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::text[], $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
			$15::timestamptz[])
			AS n(partner_id, remote_id, name, admin_email, admin_phone, admin_display_name, storage_path, request_fp,
				created_at, command_id, idem_key, request_id, trace_id, body_suffix, received_at)
		ORDER BY n.partner_id, n.remote_id),
	counter AS (
		INSERT INTO partner_counters AS c (partner_id, last_customer_number)
		SELECT partner_id, count(*) FROM n GROUP BY partner_id ORDER BY partner_id
		ON CONFLICT (partner_id) DO UPDATE SET last_customer_number = c.last_customer_number + excluded.last_customer_number
		RETURNING partner_id, last_customer_number),
	ins AS (INSERT INTO tenants (partner_id, kind, remote_id, name, admin_email, admin_phone, admin_display_name,
		storage_path, request_fp, created_at, customer_number)
	SELECT n.partner_id, 'customer', n.remote_id, n.name, n.admin_email, nullif(n.admin_phone, ''),
		nullif(n.admin_display_name, ''), n.storage_path, n.request_fp, n.created_at,
		c.last_customer_number - count(*) OVER p + row_number() OVER (p ORDER BY n.remote_id)
	FROM n JOIN counter c USING (partner_id)
	WINDOW p AS (PARTITION BY n.partner_id)
	ON CONFLICT (partner_id, remote_id) DO NOTHING
	RETURNING partner_id, remote_id, customer_number, name, created_at, is_active, admin_email,
		coalesce(admin_phone, '') AS admin_phone, coalesce(admin_display_name, '') AS admin_display_name),
	inserted AS (
		SELECT ins.*, n.command_id, '{"id":' || ins.customer_number || n.body_suffix AS body,
			n.request_fp, n.idem_key, n.request_id, n.trace_id, n.received_at
		FROM ins JOIN n USING (partner_id, remote_id)),
	ledger AS (
		INSERT INTO command_ledger (partner_id, command_id, method, request_fp, idem_key, request_id, trace_id,
			status, response_status, response_body, created_at)
		SELECT partner_id, command_id, 'createCustomer', request_fp, nullif(idem_key, ''), request_id,
			nullif(trace_id, ''), 'succeeded', 200, convert_to(body, 'UTF8'), received_at
		FROM inserted WHERE $16)
	SELECT customer_number, remote_id, name, partner_id, created_at, is_active, admin_email, admin_phone,
		admin_display_name, command_id, body
	FROM inserted`

// rowsQuerier is what a pool and a transaction have in common for a query.
type rowsQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// insertCustomers inserts the batch in one statement and returns the rows it
// inserted by command id. With record, the same statement writes the ledger
// rows of the inserted customers, in its own commit; without, the caller's
// transaction records the command.
func insertCustomers(ctx context.Context, q rowsQuerier, batch []*newCustomer, record bool) (map[string]insertedCustomer, error) {
	n := len(batch)
	partners, times, received := make([]int64, n), make([]time.Time, n), make([]time.Time, n)
	cols := make([][]string, 12)
	for i := range cols {
		cols[i] = make([]string, n)
	}
	for i, c := range batch {
		p := c.params
		partners[i], times[i], received[i] = c.partner, c.now, c.now
		if !c.cmd.Timestamp.IsZero() {
			received[i] = c.cmd.Timestamp
		}
		for j, v := range []string{p.ID, p.Name, p.Admin.Email, p.Admin.Phone, p.Admin.DisplayName, c.path, c.fp,
			c.cmd.CommandID, c.cmd.IdemKey, c.cmd.RequestID, c.cmd.TraceID, c.suffix} {
			cols[j][i] = v
		}
	}
	rows, err := q.Query(ctx, insertCustomersSQL, partners, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5],
		cols[6], times, cols[7], cols[8], cols[9], cols[10], cols[11], received, record)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	got := make(map[string]insertedCustomer, n)
	for rows.Next() {
		var c insertedCustomer
		var created time.Time
		var id string
		if err := rows.Scan(&c.ID, &c.RemoteID, &c.Name, &c.Partner, &created, &c.IsActive,
			&c.Admin.Email, &c.Admin.Phone, &c.Admin.DisplayName, &id, &c.body); err != nil {
			return nil, err
		}
		c.CreatedAt = created.Unix()
		got[id] = c
	}
	return got, rows.Err()
}
