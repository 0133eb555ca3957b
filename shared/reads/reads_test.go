package reads

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// fixture is a migrated database with two partners and a reader on it.
type fixture struct {
	t    *testing.T
	db   *pgxpool.Pool
	r    *Reader
	a, b int64 // partners
	now  time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, testenv.Database(t), 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, db: db, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f.r = New(db, Config{Now: func() time.Time { return f.now }})
	f.a, f.b = f.partner("A"), f.partner("B")
	return f
}

func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.db.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

func (f *fixture) partner(name string) int64 {
	var id int64
	if err := f.db.QueryRow(context.Background(), `INSERT INTO partners (name) VALUES ($1) RETURNING id`, name).Scan(&id); err != nil {
		f.t.Fatal(err)
	}
	return id
}

// customer adds a customer of partner with its number; it returns the tenant's key.
func (f *fixture) customer(partner int64, id string, number int, created time.Time) int64 {
	f.t.Helper()
	var pk int64
	err := f.db.QueryRow(context.Background(), `INSERT INTO tenants (partner_id, kind, remote_id, name, admin_email,
		storage_path, request_fp, customer_number, created_at) VALUES ($1, 'customer', $2, 'Co '||$2, 'a@example.com', 'local:x', 'fp', $3, $4)
		RETURNING id`, partner, id, number, created).Scan(&pk)
	if err != nil {
		f.t.Fatal(err)
	}
	return pk
}

// order adds a first order; status and termEnd as given.
func (f *fixture) order(partner, tenant int64, id, status string, created, termEnd time.Time) {
	f.t.Helper()
	f.exec(`INSERT INTO order_ids (partner_id, remote_id, kind) VALUES ($1, $2, 'order')`, partner, id)
	f.exec(`INSERT INTO orders (partner_id, remote_id, tenant_id, product, licenses, duration, status,
		term_start, term_end, request_fp, created_at, updated_at)
		VALUES ($1, $2, $3, 'oo-lite', 1, 'monthly', $4, $5, $6, 'fp', $5, $5)`, partner, id, tenant, status, created, termEnd)
}

// call answers method for partner with params as JSON, and returns the
// answer encoded, or the API error.
func (f *fixture) call(partner int64, method string, params string) (map[string]any, *protocol.Error) {
	f.t.Helper()
	m, _ := protocol.Lookup(method)
	p, perr := m.Decode([]byte(params))
	if perr != nil {
		return nil, perr
	}
	v, err := f.r.Answer(context.Background(), partner, m, p)
	var apiErr *protocol.Error
	if errors.As(err, &apiErr) {
		return nil, apiErr
	}
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, params, err)
	}
	b, _ := json.Marshal(v)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		f.t.Fatal(err)
	}
	return out, nil
}

// walk reads every page of method with filters (a JSON object's members,
// without braces) and limit, and returns the ids of the rows (by field) in
// the order given.
func (f *fixture) walk(partner int64, method, filters string, limit int, field string, between ...func()) []string {
	f.t.Helper()
	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		params := fmt.Sprintf(`{%s"limit":%d%s}`, withComma(filters), limit, cursor)
		page, perr := f.call(partner, method, params)
		if perr != nil {
			f.t.Fatalf("%s %s: %v", method, params, perr)
		}
		data := page["data"].([]any)
		if len(data) > limit {
			f.t.Fatalf("%d rows on a page of %d", len(data), limit)
		}
		for _, d := range data {
			ids = append(ids, fmt.Sprint(d.(map[string]any)[field]))
		}
		next, _ := page["nextCursor"].(string)
		if next == "" {
			if page["nextCursor"] != nil {
				f.t.Fatalf("nextCursor %v", page["nextCursor"])
			}
			return ids
		}
		if len(data) != limit {
			f.t.Fatalf("a page of %d rows (limit %d) with a next cursor", len(data), limit)
		}
		cursor = fmt.Sprintf(`,"cursor":%q`, next)
		for _, b := range between {
			b()
		}
	}
}

func withComma(s string) string {
	if s == "" {
		return ""
	}
	return s + ","
}

func TestListOrdersWalksEveryPageInKeyOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	t0 := f.now.Add(-time.Hour)
	c1 := f.customer(f.a, "C1", 1, t0)
	c2 := f.customer(f.a, "C2", 2, t0)
	cb := f.customer(f.b, "C1", 1, t0)
	var all, ofC2, active []string
	for i := range 23 {
		// Two orders share each creation time: the id breaks the tie.
		created := t0.Add(time.Duration(i/2) * time.Microsecond)
		id, tenant, status, end := fmt.Sprintf("O%02d", i), c1, "active", f.now.Add(24*time.Hour)
		if i%3 == 0 {
			tenant = c2
			ofC2 = append(ofC2, id)
		}
		switch i % 4 {
		case 1:
			status = "cancelled"
		case 2:
			end = f.now.Add(-time.Minute) // expired
		}
		f.order(f.a, tenant, id, status, created, end)
		f.order(f.b, cb, id, "active", created, end) // the same ids at partner B
		all = append(all, id)
		if status == "active" && i%4 != 2 {
			active = append(active, id)
		}
	}
	for _, limit := range []int{1, 5, 23, 100} {
		if got := f.walk(f.a, "listOrders", "", limit, "id"); strings.Join(got, ",") != strings.Join(all, ",") {
			t.Errorf("limit %d: %v, want %v", limit, got, all)
		}
	}
	if got := f.walk(f.a, "listOrders", `"customer":"C2"`, 2, "id"); strings.Join(got, ",") != strings.Join(ofC2, ",") {
		t.Errorf("customer C2: %v, want %v", got, ofC2)
	}
	if got := f.walk(f.a, "listOrders", `"status":"active"`, 4, "id"); strings.Join(got, ",") != strings.Join(active, ",") {
		t.Errorf("active: %v, want %v", got, active)
	}
	expired, _ := f.call(f.a, "listOrders", `{"status":"expired","limit":100}`)
	for _, o := range expired["data"].([]any) {
		if o.(map[string]any)["status"] != "expired" {
			t.Errorf("status expired lists %v", o)
		}
	}
	if n := len(expired["data"].([]any)); n != 6 {
		t.Errorf("%d expired, want 6", n)
	}
	page, _ := f.call(f.a, "listOrders", `{}`)
	if n := len(page["data"].([]any)); n != 23 || page["nextCursor"] != nil {
		t.Errorf("default limit: %d rows, next %v", n, page["nextCursor"])
	}
	if _, perr := f.call(f.a, "listOrders", `{"customer":"NOPE"}`); perr == nil || perr.Code != protocol.CodeCustomerNotFound || perr.Field != "params.customer" {
		t.Errorf("unknown customer: %v", perr)
	}
}

func TestCursorIsBoundToPartnerFiltersAndList(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ca := f.customer(f.a, "C1", 1, f.now)
	cb := f.customer(f.b, "C1", 1, f.now)
	for i := range 3 {
		f.order(f.a, ca, fmt.Sprint("O", i), "active", f.now.Add(time.Duration(i)), f.now.Add(time.Hour))
		f.order(f.b, cb, fmt.Sprint("O", i), "active", f.now.Add(time.Duration(i)), f.now.Add(time.Hour))
	}
	page, _ := f.call(f.a, "listOrders", `{"status":"active","limit":1}`)
	cursor := page["nextCursor"].(string)
	// The position part only: the MAC after the dot is random and may hold
	// any two letters.
	if pos, _, _ := strings.Cut(cursor, "."); strings.Contains(pos, "O0") {
		t.Errorf("the cursor %q shows its position in clear", cursor)
	}
	if _, perr := f.call(f.a, "listOrders", `{"status":"active","limit":2,"cursor":"`+cursor+`"}`); perr != nil {
		t.Fatalf("same filters, another limit: %v", perr)
	}
	tampered := []byte(cursor)
	tampered[2] ^= 1
	for name, c := range map[string]struct {
		partner int64
		method  string
		params  string
	}{
		"another partner":  {f.b, "listOrders", `{"status":"active","cursor":"` + cursor + `"}`},
		"another status":   {f.a, "listOrders", `{"status":"suspended","cursor":"` + cursor + `"}`},
		"a filter dropped": {f.a, "listOrders", `{"cursor":"` + cursor + `"}`},
		"a filter added":   {f.a, "listOrders", `{"status":"active","customer":"C1","cursor":"` + cursor + `"}`},
		"another list":     {f.a, "listCustomers", `{"cursor":"` + cursor + `"}`},
		"altered":          {f.a, "listOrders", `{"status":"active","cursor":"` + string(tampered) + `"}`},
		"no MAC":           {f.a, "listOrders", `{"status":"active","cursor":"` + strings.Split(cursor, ".")[0] + `"}`},
	} {
		_, perr := f.call(c.partner, c.method, c.params)
		if perr == nil || perr.Status != 400 || perr.Code != protocol.CodeInvalidParams || perr.Field != "params.cursor" ||
			!strings.Contains(perr.Message, "same filters") {
			t.Errorf("%s: %v, want 400 invalid_params naming params.cursor", name, perr)
		}
	}
}

// TestWalkUnderConcurrentWritesHasNoDuplicateAndNoMiss walks listOrders while
// orders are created and changed between the pages: every order that existed
// unchanged for the whole walk is given once, and nothing is given twice.
func TestWalkUnderConcurrentWritesHasNoDuplicateAndNoMiss(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.customer(f.a, "C1", 1, f.now)
	for i := range 60 {
		f.order(f.a, c, fmt.Sprintf("E%03d", i), "active", f.now.Add(time.Duration(i)*time.Second), f.now.Add(time.Hour))
	}
	n := 0
	changed := map[string]bool{}
	got := f.walk(f.a, "listOrders", "", 7, "id", func() {
		// Between pages: a new order (created now, and one back-dated
		// into the pages already read), and an existing order changed.
		f.order(f.a, c, fmt.Sprintf("N%03d", n), "active", f.now.Add(time.Duration(100+n)*time.Second), f.now.Add(time.Hour))
		f.order(f.a, c, fmt.Sprintf("B%03d", n), "active", f.now.Add(-time.Second), f.now.Add(time.Hour))
		e := fmt.Sprintf("E%03d", n*9%60)
		changed[e] = true
		f.exec(`UPDATE orders SET status = 'suspended', updated_at = now() WHERE partner_id = $1 AND remote_id = $2`, f.a, e)
		n++
	})
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
		if seen[id] > 1 {
			t.Errorf("%s given twice", id)
		}
	}
	for i := range 60 {
		if id := fmt.Sprintf("E%03d", i); seen[id] == 0 && !changed[id] {
			t.Errorf("%s existed unchanged for the whole walk and was not given", id)
		}
	}
	if n < 8 {
		t.Fatalf("only %d pages", n)
	}
}

func TestGetOrders(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.customer(f.a, "C1", 1, f.now)
	cb := f.customer(f.b, "C1", 1, f.now)
	var ids []string
	for i := range 100 {
		id := fmt.Sprintf("O%03d", i)
		if i%10 == 0 {
			f.order(f.b, cb, id, "active", f.now, f.now.Add(time.Hour)) // another partner's
		} else if i != 99 {
			f.order(f.a, c, id, "active", f.now, f.now.Add(time.Hour))
		}
		ids = append(ids, id)
	}
	var pk int64
	f.db.QueryRow(context.Background(), `SELECT id FROM orders WHERE partner_id = $1 AND remote_id = 'O001'`, f.a).Scan(&pk)
	f.exec(`INSERT INTO order_ids (partner_id, remote_id, kind) VALUES ($1, 'R1', 'renewal')`, f.a)
	f.exec(`INSERT INTO renewals (partner_id, remote_id, order_id, term_start, term_end) VALUES ($1, 'R1', $2, $3, $4)`,
		f.a, pk, f.now.Add(time.Hour), f.now.Add(2*time.Hour))
	// R1 (a renewal of O001) comes first: O001 is given once, in its place.
	ids[99] = "R1"
	body, _ := json.Marshal(ids)
	res, perr := f.call(f.a, "getOrders", `{"ids":`+string(body)+`}`)
	if perr != nil {
		t.Fatal(perr)
	}
	var data []string
	for _, o := range res["data"].([]any) {
		data = append(data, o.(map[string]any)["id"].(string))
	}
	var missing []string
	for _, m := range res["missing"].([]any) {
		missing = append(missing, m.(string))
	}
	var wantData, wantMissing []string
	for i := range 99 {
		if i%10 == 0 {
			wantMissing = append(wantMissing, fmt.Sprintf("O%03d", i))
		} else {
			wantData = append(wantData, fmt.Sprintf("O%03d", i))
		}
	}
	if strings.Join(data, ",") != strings.Join(wantData, ",") || strings.Join(missing, ",") != strings.Join(wantMissing, ",") {
		t.Errorf("data %v\nmissing %v\nwant %v\n%v", data, missing, wantData, wantMissing)
	}
	if r1 := res["data"].([]any)[0].(map[string]any); len(r1["renewals"].([]any)) != 1 {
		t.Errorf("O001 without its renewal: %v", r1)
	}
	none, _ := f.call(f.b, "getOrders", `{"ids":["O001"]}`)
	if len(none["data"].([]any)) != 0 || len(none["missing"].([]any)) != 1 {
		t.Errorf("partner B sees A's order: %v", none)
	}
}

func TestListCustomersUsersAndRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for i := range 7 {
		f.customer(f.a, fmt.Sprint("C", i), i+1, f.now.Add(time.Duration(i)*time.Hour))
	}
	f.customer(f.b, "X", 1, f.now)
	if got := f.walk(f.a, "listCustomers", "", 3, "remoteId"); strings.Join(got, ",") != "C0,C1,C2,C3,C4,C5,C6" {
		t.Errorf("customers %v", got)
	}
	since := f.now.Add(5 * time.Hour).Unix()
	if got := f.walk(f.a, "listCustomers", fmt.Sprintf(`"updatedSince":%d`, since), 1, "remoteId"); strings.Join(got, ",") != "C5,C6" {
		t.Errorf("customers since %v", got)
	}

	if got := f.walk(f.a, "listUsers", "", 2, "email"); len(got) != 0 {
		t.Errorf("users of a partner without a consumer tenant: %v", got)
	}
	var tenant int64
	f.db.QueryRow(context.Background(), `INSERT INTO tenants (partner_id, kind, name, storage_path) VALUES ($1, 'consumer', 'Consumers', 'local:y') RETURNING id`, f.a).Scan(&tenant)
	for _, e := range []string{"c@example.com", "a@example.com", "b@example.com"} {
		f.exec(`INSERT INTO users (tenant_id, email, request_fp, created_at) VALUES ($1, $2, 'fp', $3)`, tenant, e, f.now)
	}
	if got := f.walk(f.a, "listUsers", "", 2, "email"); strings.Join(got, ",") != "a@example.com,b@example.com,c@example.com" {
		t.Errorf("users %v", got)
	}
	if got := f.walk(f.b, "listUsers", "", 2, "email"); len(got) != 0 {
		t.Errorf("partner B sees A's users: %v", got)
	}

	for i := range 9 {
		method, status := "createCustomer", "succeeded"
		if i%3 == 0 {
			method, status = "cancelOrder", "failed"
		}
		f.exec(`INSERT INTO command_ledger (partner_id, command_id, method, request_fp, request_id, status,
			response_status, response_body, created_at) VALUES ($1, $2, $3, 'fp', $4, $5, 200, '{"ok":true}', $6)`,
			f.a, fmt.Sprint("cmd-", i), method, fmt.Sprint("req-", i), status, f.now.Add(time.Duration(i)*time.Minute))
	}
	if got := f.walk(f.a, "listRequests", "", 4, "requestId"); len(got) != 9 || got[0] != "req-0" || got[8] != "req-8" {
		t.Errorf("requests %v", got)
	}
	if got := f.walk(f.a, "listRequests", `"method":"cancelOrder","status":"failed"`, 1, "requestId"); strings.Join(got, ",") != "req-0,req-3,req-6" {
		t.Errorf("failed cancelOrder %v", got)
	}
	if got := f.walk(f.a, "listRequests", fmt.Sprintf(`"since":%d`, f.now.Add(7*time.Minute).Unix()), 1, "requestId"); strings.Join(got, ",") != "req-7,req-8" {
		t.Errorf("since %v", got)
	}
	one, _ := f.call(f.a, "listRequests", `{"limit":1}`)
	r := one["data"].([]any)[0].(map[string]any)
	if r["status"] != "failed" || r["response"].(map[string]any)["body"].(map[string]any)["ok"] != true || r["completedAt"] == nil {
		t.Errorf("a listed call %v", r)
	}
	if got := f.walk(f.b, "listRequests", "", 4, "requestId"); len(got) != 0 {
		t.Errorf("partner B sees A's calls: %v", got)
	}
}

// TestCursorKeyIsReadOnce: readers on one database sign alike (a cursor of
// one gateway is good on another), and the key is read once.
func TestCursorKeyIsSharedByReaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.customer(f.a, "C1", 1, f.now)
	f.order(f.a, c, "O1", "active", f.now, f.now.Add(time.Hour))
	f.order(f.a, c, "O2", "active", f.now.Add(time.Second), f.now.Add(time.Hour))
	page, _ := f.call(f.a, "listOrders", `{"limit":1}`)
	other := New(f.db, Config{})
	m, _ := protocol.Lookup("listOrders")
	p, _ := m.Decode([]byte(`{"limit":1,"cursor":"` + page["nextCursor"].(string) + `"}`))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			v, err := other.Answer(context.Background(), f.a, m, p)
			if err != nil || len(v.(Page[Order]).Data) != 1 || v.(Page[Order]).Data[0].ID != "O2" {
				t.Errorf("another reader: %v %v", v, err)
			}
		})
	}
	wg.Wait()
}
