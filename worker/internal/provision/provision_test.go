package provision

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffice/provisioner/shared/protocol"
	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// fixture is a migrated database, a partner and a service whose clock the
// test moves.
type fixture struct {
	t       testing.TB
	db      *pgxpool.Pool
	svc     *Service
	clock   time.Time
	partner int64
	root    string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, testenv.Database(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, db: db, root: t.TempDir(), clock: day("2024-01-31T09:00:00Z")}
	if err := db.QueryRow(ctx, `INSERT INTO partners (name) VALUES ('P') RETURNING id`).Scan(&f.partner); err != nil {
		t.Fatal(err)
	}
	f.svc = New(db, Config{StorageRoot: f.root, RenewalWindow: 15 * 24 * time.Hour}, NewMetrics(prometheus.NewRegistry()))
	f.svc.now = func() time.Time { return f.clock }
	return f
}

// newPartner adds a partner to the database.
func (f *fixture) newPartner(t testing.TB, name string) int64 {
	t.Helper()
	var id int64
	if err := f.db.QueryRow(context.Background(), `INSERT INTO partners (name) VALUES ($1) RETURNING id`, name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// do runs a method and returns the status and decoded body.
func (f *fixture) do(method string, params any) (int, map[string]any) {
	f.t.Helper()
	raw, _ := json.Marshal(params)
	res, err := f.svc.Handle(context.Background(), &protocol.Command{Method: method, Partner: f.partner, RequestID: "r1", Params: raw})
	if err != nil {
		f.t.Fatalf("%s: %v", method, err)
	}
	var body map[string]any
	if err := json.Unmarshal(res.Body, &body); err != nil {
		f.t.Fatalf("%s: body %s: %v", method, res.Body, err)
	}
	return res.Status, body
}

func (f *fixture) want(method string, params any, status int) map[string]any {
	f.t.Helper()
	got, body := f.do(method, params)
	if got != status {
		f.t.Fatalf("%s %v: status %d, want %d; body %v", method, params, got, status, body)
	}
	return body
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func unix(s string) float64 { return float64(day(s).Unix()) }

type m = map[string]any

func TestCustomerCreatesTenantWithStorage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	body := f.want(protocol.CreateCustomer, m{"id": "ABC", "name": "ABC Company", "admin": m{"email": "test3@example.com"}}, 200)
	if body["remoteId"] != "ABC" || body["name"] != "ABC Company" || body["isActive"] != true ||
		body["partner"] != float64(f.partner) || body["admin"].(m)["email"] != "test3@example.com" {
		t.Fatalf("body %v", body)
	}
	var path string
	if err := f.db.QueryRow(context.Background(), `SELECT storage_path FROM tenants WHERE remote_id = 'ABC'`).Scan(&path); err != nil {
		t.Fatal(err)
	}
	rel, ok := strings.CutPrefix(path, "local:")
	if !ok {
		t.Fatalf("tenant storage recorded as %q, want a local: URI", path)
	}
	if st, err := os.Stat(filepath.Join(f.root, rel)); err != nil || !st.IsDir() {
		t.Fatalf("tenant storage %s: %v", path, err)
	}
	// The same call again returns the same customer; other params are a conflict.
	again := f.want(protocol.CreateCustomer, m{"id": "ABC", "name": "ABC Company", "admin": m{"email": "test3@example.com"}}, 200)
	if again["id"] != body["id"] {
		t.Fatalf("second create returned id %v, first %v", again["id"], body["id"])
	}
	if b := f.want(protocol.CreateCustomer, m{"id": "ABC", "name": "Other", "admin": m{"email": "test3@example.com"}}, 409); errCode(b) != "already_exists" {
		t.Fatalf("conflict body %v", b)
	}
}

func TestOrderTermsAndRenewals(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.want(protocol.CreateCustomer, m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}, 200)
	o := f.want(protocol.CreateFirstOrder, m{"customer": "C1", "id": "O1", "product": "oo-std", "licenses": 5, "duration": "monthly"}, 200)
	if o["termStart"] != unix("2024-01-31T09:00:00Z") || o["termEnd"] != unix("2024-02-29T09:00:00Z") || o["status"] != "active" {
		t.Fatalf("first order %v", o)
	}
	// 29 days left: too early.
	if b := f.want(protocol.CreateRenewalOrder, m{"parent": "O1", "id": "R1"}, 422); errCode(b) != "renewal_too_early" {
		t.Fatalf("early renewal %v", b)
	}
	// Exactly 15 days left: accepted, the new term starts at the old end.
	f.clock = day("2024-02-14T09:00:00Z")
	r := f.want(protocol.CreateRenewalOrder, m{"parent": "O1", "id": "R1"}, 200)
	if r["termEnd"] != unix("2024-03-29T09:00:00Z") || r["termStart"] != unix("2024-01-31T09:00:00Z") || len(r["renewals"].([]any)) != 1 {
		t.Fatalf("renewed order %v", r)
	}
	// The same renewal again changes nothing.
	if again := f.want(protocol.CreateRenewalOrder, m{"parent": "O1", "id": "R1"}, 200); again["termEnd"] != r["termEnd"] {
		t.Fatalf("repeated renewal moved termEnd: %v", again)
	}
	// Once the first term ends, the renewal's term is in force.
	f.clock = day("2024-03-01T00:00:00Z")
	if g := f.want(protocol.GetOrder, m{"id": "R1"}, 200); g["termStart"] != unix("2024-02-29T09:00:00Z") || g["id"] != "O1" {
		t.Fatalf("order by renewal id %v", g)
	}
	// Past termEnd with no renewal: expired; a renewal then starts now.
	f.clock = day("2024-04-10T00:00:00Z")
	if g := f.want(protocol.GetOrder, m{"id": "O1"}, 200); g["status"] != "expired" {
		t.Fatalf("want expired, got %v", g["status"])
	}
	r2 := f.want(protocol.CreateRenewalOrder, m{"parent": "O1", "id": "R2"}, 200)
	if r2["termStart"] != unix("2024-04-10T00:00:00Z") || r2["termEnd"] != unix("2024-05-10T00:00:00Z") || r2["status"] != "active" {
		t.Fatalf("renewal of expired order %v", r2)
	}
	// Ids share one namespace; a renewal id is no parent.
	if b := f.want(protocol.CreateFirstOrder, m{"customer": "C1", "id": "R1", "product": "oo-std", "licenses": 5, "duration": "monthly"}, 409); errCode(b) != "already_exists" {
		t.Fatalf("order with a renewal's id %v", b)
	}
	if b := f.want(protocol.CreateRenewalOrder, m{"parent": "R1", "id": "R3"}, 422); errCode(b) != "not_a_first_order" {
		t.Fatalf("renewal of a renewal %v", b)
	}
	var terms int
	f.db.QueryRow(context.Background(), `SELECT count(*) FROM renewals`).Scan(&terms)
	if terms != 2 {
		t.Fatalf("renewal rows %d, want 2", terms)
	}
}

func TestOrderLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.want(protocol.CreateCustomer, m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}, 200)
	f.want(protocol.CreateFirstOrder, m{"customer": "C1", "id": "O1", "product": "erp-std", "licenses": 1, "duration": "monthly"}, 200)
	if b := f.want(protocol.SuspendOrder, m{"id": "O1"}, 200); b["status"] != "suspended" {
		t.Fatalf("suspend %v", b)
	}
	f.want(protocol.SuspendOrder, m{"id": "O1"}, 200)
	// A suspended order can renew, and stays suspended.
	f.clock = f.clock.Add(20 * 24 * time.Hour)
	if b := f.want(protocol.CreateRenewalOrder, m{"parent": "O1", "id": "R1"}, 200); b["status"] != "suspended" {
		t.Fatalf("renewal resumed the order: %v", b)
	}
	if b := f.want(protocol.ResumeOrder, m{"id": "O1"}, 200); b["status"] != "active" {
		t.Fatalf("resume %v", b)
	}
	if b := f.want(protocol.UpdateOrder, m{"id": "O1", "licenses": 7, "product": "erp-admin"}, 200); b["licenses"] != float64(7) || b["product"] != "erp-admin" {
		t.Fatalf("update %v", b)
	}
	if b := f.want(protocol.CancelOrder, m{"id": "O1"}, 200); b["status"] != "cancelled" {
		t.Fatalf("cancel %v", b)
	}
	f.want(protocol.CancelOrder, m{"id": "O1"}, 200)
	for _, method := range []string{protocol.SuspendOrder, protocol.ResumeOrder} {
		if b := f.want(method, m{"id": "O1"}, 409); errCode(b) != "order_cancelled" {
			t.Fatalf("%s on cancelled %v", method, b)
		}
	}
	if b := f.want(protocol.CreateRenewalOrder, m{"parent": "O1", "id": "R2"}, 409); errCode(b) != "order_cancelled" {
		t.Fatalf("renewal of cancelled %v", b)
	}
	if b := f.want(protocol.UpdateOrder, m{"id": "O1", "licenses": 2}, 409); errCode(b) != "order_cancelled" {
		t.Fatalf("update of cancelled %v", b)
	}
	// The refused renewal left its id free.
	var n int
	f.db.QueryRow(context.Background(), `SELECT count(*) FROM order_ids WHERE remote_id = 'R2'`).Scan(&n)
	if n != 0 {
		t.Fatal("a refused renewal left its id taken")
	}
	if b := f.want(protocol.GetOrder, m{"id": "NOPE"}, 404); errCode(b) != "order_not_found" {
		t.Fatalf("unknown order %v", b)
	}
	if b := f.want(protocol.CreateFirstOrder, m{"customer": "NOPE", "id": "O9", "product": "erp-std", "licenses": 1, "duration": "monthly"}, 404); errCode(b) != "customer_not_found" {
		t.Fatalf("order for unknown customer %v", b)
	}
}

func TestConsumerUsers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	u := f.want(protocol.CreateUser, m{"email": "Ann@Example.com", "displayName": "Ann"}, 200)
	if u["email"] != "ann@example.com" || u["displayName"] != "Ann" || u["isActive"] != true {
		t.Fatalf("user %v", u)
	}
	// Emails compare case-insensitively.
	f.want(protocol.CreateUser, m{"email": "ANN@example.com", "displayName": "Ann"}, 200)
	if b := f.want(protocol.CreateUser, m{"email": "ann@example.com", "displayName": "Other"}, 409); errCode(b) != "already_exists" {
		t.Fatalf("user conflict %v", b)
	}
	reset := f.want(protocol.ResetUser, m{"email": "ANN@example.com"}, 200)
	token, _ := reset["resetToken"].(string)
	if len(token) < 32 || reset["expiresAt"] == nil {
		t.Fatalf("reset %v", reset)
	}
	var stored []byte
	f.db.QueryRow(context.Background(), `SELECT reset_token_hash FROM users`).Scan(&stored)
	if len(stored) != 32 || string(stored) == token {
		t.Fatal("reset token not stored as a hash")
	}
	var tenants int
	f.db.QueryRow(context.Background(), `SELECT count(*) FROM tenants WHERE kind = 'consumer'`).Scan(&tenants)
	if tenants != 1 {
		t.Fatalf("consumer tenants %d", tenants)
	}
	f.want(protocol.DeleteUser, m{"email": "ann@example.com"}, 200)
	if b := f.want(protocol.DeleteUser, m{"email": "ann@example.com"}, 200); b["deleted"] != true {
		t.Fatalf("delete absent %v", b)
	}
	if b := f.want(protocol.ResetUser, m{"email": "ann@example.com"}, 404); errCode(b) != "user_not_found" {
		t.Fatalf("reset absent %v", b)
	}
}

func TestRenewalTimesAgreeToTheSecond(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.clock = day("2025-03-10T10:00:00Z").Add(700 * time.Millisecond) // rounds up, truncates down
	f.want(protocol.CreateCustomer, m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}, 200)
	o := f.want(protocol.CreateFirstOrder, m{"customer": "C1", "id": "O1", "product": "oo-std", "licenses": 5, "duration": "monthly"}, 200)
	f.clock = f.clock.Add(20 * 24 * time.Hour)
	r := f.want(protocol.CreateRenewalOrder, m{"parent": "O1", "id": "R1"}, 200)
	rn := r["renewals"].([]any)[0].(m)
	if rn["termStart"] != o["termEnd"] || rn["termEnd"] != r["termEnd"] || rn["createdAt"] != float64(f.clock.Unix()) {
		t.Fatalf("renewal %v of order %v (first term ended %v)", rn, r, o["termEnd"])
	}
}

// A customer's id counts its partner's customers only: 1, 2, 3... per
// partner, however the partners' calls interleave. A create of an id the
// partner already has (the same call again, or other params: 409) may use up
// a number, a gap that only the partner's own calls make.
func TestCustomerIDsArePerPartner(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a, b := f.partner, f.newPartner(t, "Q")
	create := func(partner int64, id, name string, status int) map[string]any {
		t.Helper()
		f.partner = partner
		defer func() { f.partner = a }()
		return f.want(protocol.CreateCustomer, m{"id": id, "name": name, "admin": m{"email": "a@example.com"}}, status)
	}
	for _, c := range []struct {
		partner  int64
		id, name string
		status   int
		want     float64 // the id answered
	}{
		{a, "ABC", "A's first", 200, 1},
		{b, "ABC", "B's first", 200, 1},
		{b, "B2", "B's second", 200, 2},
		{a, "ABC", "A's first", 200, 1}, // the same call again: the same customer
		{a, "ABC", "Other", 409, 0},     // the same id with other params
		{b, "B3", "B's third", 200, 3},  // A's calls leave no trace in B's numbers
		{a, "A2", "A's second", 200, 4}, // A's own two calls used up 2 and 3
	} {
		body := create(c.partner, c.id, c.name, c.status)
		if c.want != 0 && (body["id"] != c.want || body["partner"] != float64(c.partner)) {
			t.Errorf("partner %d %s: %v, want id %v", c.partner, c.id, body, c.want)
		}
	}
	f.partner = b
	if g := f.want(protocol.GetCustomer, m{"id": "B3"}, 200); g["id"] != float64(3) {
		t.Errorf("getCustomer B3 of partner B: %v", g)
	}
	// Orders still reference the customer by its row, and show its partner's id.
	if o := f.want(protocol.CreateFirstOrder, m{"customer": "B2", "id": "O1", "product": "oo-std", "licenses": 1, "duration": "monthly"}, 200); o["customer"] != "B2" {
		t.Errorf("order %v", o)
	}
	// The consumer tenant is no customer and takes no number.
	f.want(protocol.CreateUser, m{"email": "ann@example.com"}, 200)
	if b4 := create(b, "B4", "B's fourth", 200); b4["id"] != float64(4) {
		t.Errorf("after the consumer tenant: %v", b4)
	}
}

// The migration numbers the customers that exist before it with the id they
// were answered with, so that no partner sees an id change, and each
// partner's numbering goes on after its highest. It goes down and up again.
func TestCustomerNumberMigrationKeepsIssuedIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := store.Open(ctx, testenv.Database(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	sqlDB := stdlib.OpenDBFromPool(db)
	t.Cleanup(func() { sqlDB.Close() })
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, os.DirFS("../../../shared/store/migrations"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	// Two partners' customers interleaved, and a consumer tenant, under the
	// schema before the migration.
	if _, err := db.Exec(ctx, `INSERT INTO partners (id, name) VALUES (1, 'P'), (2, 'Q');
		INSERT INTO tenants (id, partner_id, kind, remote_id, name, admin_email, storage_path) VALUES
			(1, 1, 'customer', 'A1', 'A1', 'a@example.com', 'x'), (2, 2, 'customer', 'B1', 'B1', 'b@example.com', 'x'),
			(3, 1, 'customer', 'A2', 'A2', 'a@example.com', 'x');
		INSERT INTO tenants (id, partner_id, kind, name, storage_path) VALUES (4, 2, 'consumer', 'Consumers', 'x');
		SELECT setval('tenants_id_seq', 4)`); err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 3); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := db.QueryRow(ctx, `SELECT string_agg(coalesce(remote_id, kind) || '=' || coalesce(customer_number::text, '-'), ' ' ORDER BY id)
		FROM tenants`).Scan(&got); err != nil || got != "A1=1 B1=2 A2=3 consumer=-" {
		t.Fatalf("numbers after the migration %q (%v), want the issued ids", got, err)
	}
	if _, err := p.Up(ctx); err != nil { // the service writes the later tables too
		t.Fatal(err)
	}
	f := &fixture{t: t, db: db, root: t.TempDir(), clock: day("2024-01-31T09:00:00Z"), partner: 2}
	f.svc = New(db, Config{StorageRoot: f.root}, NewMetrics(prometheus.NewRegistry()))
	if c := f.want(protocol.CreateCustomer, m{"id": "B2", "name": "B2", "admin": m{"email": "b@example.com"}}, 200); c["id"] != float64(3) {
		t.Fatalf("Q's next customer after the migration: %v, want id 3", c)
	}
	if _, err := p.DownTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
}
