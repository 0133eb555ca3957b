package reads

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/scripts/lab/load"
	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/reads"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// seedSQL writes $2 orders of partner $1 over 100 customers, created over the
// last 300 days: 5% cancelled, 5% suspended, the rest active; 1% updated
// 30 minutes ago, 0.01% after the seeding started.
var seedSQL = []string{
	`INSERT INTO tenants (partner_id, kind, remote_id, name, admin_email, storage_path, request_fp, customer_number)
		SELECT $1, 'customer', 'LC' || g, 'List Co ' || g, 'l@example.com', 'local:none', 'fp', 1000 + g
		FROM generate_series(1, 100) g`,
	`INSERT INTO order_ids (partner_id, remote_id, kind)
		SELECT $1, 'L' || lpad(g::text, 7, '0'), 'order' FROM generate_series(1, $2::int) g`,
	`INSERT INTO orders (partner_id, remote_id, tenant_id, product, licenses, duration, status,
		term_start, term_end, request_fp, created_at, updated_at)
		SELECT $1, 'L' || lpad(g::text, 7, '0'), t.id, 'oo-std', 1 + g % 100, 'yearly',
			CASE g % 20 WHEN 0 THEN 'cancelled' WHEN 1 THEN 'suspended' ELSE 'active' END,
			x.c, x.c + interval '1 year', 'fp', x.c,
			CASE WHEN g % 100 = 7 THEN now() - interval '30 minutes' WHEN g % 10000 = 3 THEN now() + interval '1 second' ELSE x.c END
		FROM generate_series(1, $2::int) g
		CROSS JOIN LATERAL (SELECT now() - interval '300 days' + (g::float8 / $2::int) * interval '300 days' AS c) x
		JOIN tenants t ON t.partner_id = $1 AND t.remote_id = 'LC' || (1 + g % 100)`,
	// As many calls in the ledger: createFirstOrder, suspendOrder and
	// resumeOrder, 1% failed, over the last 30 days.
	`INSERT INTO command_ledger (partner_id, command_id, method, request_fp, request_id, status,
		response_status, response_body, created_at, completed_at)
		SELECT $1, 'lab-' || g, (ARRAY['createFirstOrder', 'suspendOrder', 'resumeOrder'])[1 + g % 3], 'fp', 'lab-' || g,
			CASE WHEN g % 100 = 5 THEN 'failed' ELSE 'succeeded' END, CASE WHEN g % 100 = 5 THEN 500 ELSE 200 END, '{}',
			now() - interval '30 days' + (g::float8 / $2::int) * interval '30 days', now()
		FROM generate_series(1, $2::int) g`,
	`ANALYZE command_ledger`,
	`ANALYZE tenants`,
	`ANALYZE orders`,
	`ANALYZE order_ids`,
}

// shape is one listOrders call measured.
type shape struct {
	name   string
	params map[string]any
}

func listPhase(ctx context.Context, w io.Writer, c *client, st *testenv.Stack, cfg config) error {
	tr := &lastQuery{}
	pc, err := pgxpool.ParseConfig(st.DatabaseURL)
	if err != nil {
		return err
	}
	pc.ConnConfig.Tracer = tr
	db, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return err
	}
	defer db.Close()
	var partner int64
	if err := db.QueryRow(ctx, `SELECT partner_id FROM tenants WHERE remote_id = 'C1'`).Scan(&partner); err != nil {
		return err
	}
	progress("list: writing %d orders of the partner", cfg.orders)
	t0 := time.Now()
	seeded := t0.Unix() + 1 // after every order the earlier phases changed
	for _, q := range seedSQL {
		args := []any{partner, cfg.orders}
		if !strings.Contains(q, "$2") {
			args = args[:1]
		}
		if strings.HasPrefix(q, "ANALYZE") {
			args = nil
		}
		if _, err := db.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	var total int
	db.QueryRow(ctx, `SELECT count(*) FROM orders WHERE partner_id = $1`, partner).Scan(&total)
	fmt.Fprintf(w, "\nlist: %d orders of the partner (%d customers), written in %s\n", total, 101, time.Since(t0).Round(time.Millisecond))

	progress("list: walking every page of 100")
	walkStart := time.Now()
	pages, rows, mid := 0, 0, ""
	params := map[string]any{"limit": 100}
	for {
		status, body := c.fetch(envelope("listOrders", params))
		var page struct {
			Data       []json.RawMessage `json:"data"`
			NextCursor *string           `json:"nextCursor"`
		}
		if status != 200 || json.Unmarshal(body, &page) != nil {
			return fmt.Errorf("listOrders page %d: %d %s", pages+1, status, body)
		}
		pages++
		rows += len(page.Data)
		if page.NextCursor == nil {
			break
		}
		if rows >= total/2 && mid == "" {
			mid = *page.NextCursor
		}
		params["cursor"] = *page.NextCursor
	}
	walk := time.Since(walkStart)
	fmt.Fprintf(w, "list: a walk of every page of 100: %d pages, %d orders, %s (%.1f ms a page)\n",
		pages, rows, walk.Round(time.Millisecond), float64(walk.Milliseconds())/float64(pages))
	if rows != total {
		return fmt.Errorf("the walk gave %d orders of %d", rows, total)
	}

	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprintf("L%07d", 1+i*(cfg.orders/100))
	}
	hour := time.Now().Add(-time.Hour).Unix()
	shapes := []shape{
		{"first page, 50", map[string]any{}},
		{"first page, 100", map[string]any{"limit": 100}},
		{"mid page, 50", map[string]any{"cursor": mid}},
		{"customer, 50", map[string]any{"customer": "LC7"}},
		{"cancelled (5%), 50", map[string]any{"status": "cancelled"}},
		{"updatedSince 1h, 50", map[string]any{"updatedSince": hour}},
		{"updatedSince seed, 50", map[string]any{"updatedSince": seeded}},
	}
	for _, s := range shapes {
		if since, ok := s.params["updatedSince"].(int64); ok {
			var n int
			db.QueryRow(ctx, `SELECT count(*) FROM orders WHERE partner_id = $1 AND updated_at >= to_timestamp($2)`, partner, since).Scan(&n)
			fmt.Fprintf(w, "list: %q matches %d orders\n", s.name, n)
		}
	}
	fmt.Fprintf(w, "%-28s %6s %8s %8s %8s %s\n", "listOrders", "calls", "p50", "p99", "max", "not 200")
	for _, s := range shapes {
		if s.name == "mid page, 50" {
			// The cursor of a page of 100 serves a page of 50: the limit is
			// not bound to it.
			s.params = map[string]any{"limit": 50, "cursor": mid}
		}
		rec := measureCalls(c, envelope("listOrders", s.params), cfg.pages)
		printRec(w, s.name, rec)
	}
	rec := measureCalls(c, envelope("getOrders", map[string]any{"ids": ids}), cfg.pages)
	printRec(w, "getOrders, 100 ids", rec)
	calls := []shape{
		{"listRequests, 50", map[string]any{}},
		{"listRequests failed (1%), 50", map[string]any{"status": "failed"}},
		{"listRequests createCustomer", map[string]any{"method": "createCustomer"}},
		{"listCustomers, 50", map[string]any{}},
	}
	for _, s := range calls {
		method, _, _ := strings.Cut(s.name, " ")
		method = strings.TrimSuffix(method, ",")
		printRec(w, s.name, measureCalls(c, envelope(method, s.params), cfg.pages))
	}

	// The plans: shared/reads runs each shape on the lab's pool, whose
	// tracer keeps the statement; EXPLAIN ANALYZE runs it again.
	r := reads.New(db, reads.Config{})
	for _, s := range append(append(shapes, shape{"getOrders, 100 ids", map[string]any{"ids": ids}}), calls...) {
		method := "listOrders"
		if _, ok := s.params["ids"]; ok {
			method = "getOrders"
		}
		if m, _, _ := strings.Cut(s.name, " "); strings.HasPrefix(m, "list") && m != "listOrders" {
			method = strings.TrimSuffix(m, ",")
		}
		if s.name == "mid page, 50" {
			s.params = map[string]any{"limit": 50, "cursor": mid}
		}
		m, _ := protocol.Lookup(method)
		raw, _ := json.Marshal(s.params)
		p, perr := m.Decode(raw)
		if perr != nil {
			return perr
		}
		tr.reset()
		if _, err := r.Answer(ctx, partner, m, p); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		sql, args := tr.last()
		plan, err := explain(ctx, db, sql, args)
		if err != nil {
			return fmt.Errorf("explain %s: %w", s.name, err)
		}
		fmt.Fprintf(w, "\nEXPLAIN ANALYZE, %s:\n%s", s.name, plan)
	}
	return nil
}

func envelope(method string, params map[string]any) string {
	b, _ := json.Marshal(map[string]any{"method": method, "params": params})
	return string(b)
}

func measureCalls(c *client, body string, n int) *load.Recorder {
	rec := load.NewRecorder()
	for range n {
		t := time.Now()
		rec.Add(c.call(body, ""), time.Since(t))
	}
	return rec
}

func printRec(w io.Writer, name string, rec *load.Recorder) {
	lat := rec.Latencies(false)
	fmt.Fprintf(w, "%-28s %6d %8s %8s %8s %v\n", name, len(rec.Latencies(true)),
		ms(load.Percentile(lat, 50)), ms(load.Percentile(lat, 99)), ms(last(lat)), rec.Labels())
}

// explain runs EXPLAIN ANALYZE of sql with args, and returns the plan with
// the renewals' subplan left out (the same for every shape).
func explain(ctx context.Context, db *pgxpool.Pool, sql string, args []any) (string, error) {
	if sql == "" {
		return "", errors.New("no statement traced")
	}
	rows, err := db.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF, BUFFERS) "+sql, args...)
	if err != nil {
		return "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	var b strings.Builder
	skip := -1
	for _, l := range lines {
		indent := len(l) - len(strings.TrimLeft(l, " "))
		if skip >= 0 && indent > skip {
			continue
		}
		skip = -1
		if strings.Contains(l, "SubPlan") {
			b.WriteString(l + " (the renewals of each row; left out)\n")
			skip = indent
			continue
		}
		b.WriteString("  " + l + "\n")
	}
	return b.String(), nil
}

// lastQuery keeps the last statement a pool ran but the cursor key's and
// the customer's lookup: the one that reads the rows.
type lastQuery struct {
	mu   sync.Mutex
	sql  string
	args []any
}

func (t *lastQuery) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if !strings.Contains(d.SQL, "read_cursor_key") && !strings.HasPrefix(d.SQL, "SELECT id FROM tenants") {
		t.mu.Lock()
		t.sql, t.args = d.SQL, d.Args
		t.mu.Unlock()
	}
	return ctx
}

func (t *lastQuery) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (t *lastQuery) reset() {
	t.mu.Lock()
	t.sql, t.args = "", nil
	t.mu.Unlock()
}

func (t *lastQuery) last() (string, []any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sql, t.args
}
