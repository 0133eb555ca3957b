package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oneoffice/provisioner/shared/audit"
)

// testKey makes a test (sandbox) key of partner.
func (s *Stack) testKey(partner string, flags ...string) string {
	s.t.Helper()
	key := s.admin(append([]string{"keys", "create", "--partner", partner, "--test"}, flags...)...)
	if !strings.HasPrefix(key, "oo_test_") || strings.ContainsAny(key, " \n") {
		s.t.Fatalf("keys create --test printed %q, want only an oo_test_ key", key)
	}
	return key
}

// wantCall calls method with key and checks the status, the error code
// when one is given, and livemode.
func (s *Stack) wantCall(key string, live bool, status int, code, method string, params m) map[string]any {
	s.t.Helper()
	r := s.Do(key, envelope(method, params))
	body := r.JSON(s.t)
	if r.Status != status || (code != "" && r.ErrorCode(s.t) != code) || body["livemode"] != live {
		s.t.Fatalf("%s %v with a %s key: %d %s; want %d %s, livemode %v", method, params,
			map[bool]string{true: "live", false: "test"}[live], r.Status, r.Body, status, code, live)
	}
	kind := map[bool]string{true: "live", false: "test"}[live]
	if h := r.Header.Get("OneOffice-Key"); h != kind {
		s.t.Fatalf("%s: OneOffice-Key %q, want %q", method, h, kind)
	}
	return body
}

// A test key sees only test data and a live key only live data: customers,
// orders, users and requests, both ways; every answer says which; a test
// customer has no storage directory.
func TestSandboxDataIsApartBothWays(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	live, test := s.Key, s.testKey("Partner A")

	cust := func(id string) m { return m{"id": id, "name": id, "admin": m{"email": "a@example.com"}} }
	order := func(c, id string) m {
		return m{"customer": c, "id": id, "product": "oo-std", "licenses": 5, "duration": "monthly"}
	}
	s.wantCall(test, false, 200, "", "createCustomer", cust("T1"))
	s.wantCall(test, false, 200, "", "createFirstOrder", order("T1", "TO1"))
	s.wantCall(test, false, 200, "", "createUser", m{"email": "test@example.com"})
	s.wantCall(live, true, 200, "", "createCustomer", cust("L1"))
	s.wantCall(live, true, 200, "", "createFirstOrder", order("L1", "LO1"))
	s.wantCall(live, true, 200, "", "createUser", m{"email": "live@example.com"})

	// Each side gets 404 for the other's ids, as for an unknown id.
	for _, c := range []struct {
		key    string
		live   bool
		method string
		params m
		code   string
	}{
		{live, true, "getCustomer", m{"id": "T1"}, "customer_not_found"},
		{live, true, "getOrder", m{"id": "TO1"}, "order_not_found"},
		{live, true, "cancelOrder", m{"id": "TO1"}, "order_not_found"},
		{live, true, "resetUser", m{"email": "test@example.com"}, "user_not_found"},
		{test, false, "getCustomer", m{"id": "L1"}, "customer_not_found"},
		{test, false, "getOrder", m{"id": "LO1"}, "order_not_found"},
		{test, false, "suspendOrder", m{"id": "LO1"}, "order_not_found"},
		{test, false, "resetUser", m{"email": "live@example.com"}, "user_not_found"},
	} {
		s.wantCall(c.key, c.live, 404, c.code, c.method, c.params)
	}
	// Lists hold only the key's side.
	ids := func(key string, live bool, method, field string) []string {
		var out []string
		for _, row := range s.wantCall(key, live, 200, "", method, m{})["data"].([]any) {
			out = append(out, row.(map[string]any)[field].(string))
		}
		slices.Sort(out)
		return out
	}
	for _, c := range []struct {
		key           string
		live          bool
		method, field string
		want          []string
	}{
		{live, true, "listCustomers", "remoteId", []string{"L1"}},
		{test, false, "listCustomers", "remoteId", []string{"T1"}},
		{live, true, "listOrders", "id", []string{"LO1"}},
		{test, false, "listOrders", "id", []string{"TO1"}},
		{live, true, "listUsers", "email", []string{"live@example.com"}},
		{test, false, "listUsers", "email", []string{"test@example.com"}},
		// The refusals above are the side's own calls: each shows on its side only.
		{live, true, "listRequests", "method", []string{"cancelOrder", "createCustomer", "createFirstOrder", "createUser", "resetUser"}},
		{test, false, "listRequests", "method", []string{"createCustomer", "createFirstOrder", "createUser", "resetUser", "suspendOrder"}},
	} {
		if got := ids(c.key, c.live, c.method, c.field); !slices.Equal(got, c.want) {
			t.Errorf("%s with the %v key: %v, want %v", c.method, c.live, got, c.want)
		}
	}
	// The same id on both sides is two customers, each numbered on its side.
	if c := s.wantCall(live, true, 200, "", "createCustomer", cust("T1")); c["id"] != float64(2) {
		t.Fatalf("live T1 after live L1: %v, want id 2", c)
	}
	// Test tenants have no storage; the live ones have theirs.
	var testPartner int64
	if err := s.DB().QueryRow(t.Context(), `SELECT id FROM partners WHERE name = 'Partner A' AND NOT livemode`).
		Scan(&testPartner); err != nil {
		t.Fatal(err)
	}
	if n := s.Count(`SELECT count(*) FROM tenants WHERE partner_id = $1 AND storage_path = 'none:'`, testPartner); n != 2 {
		t.Fatalf("%d test tenants without storage, want its customer and its consumer tenant", n)
	}
	if _, err := os.Stat(filepath.Join(s.Storage, "p"+itoa(testPartner))); !os.IsNotExist(err) {
		t.Fatalf("the test partner has a storage directory: %v", err)
	}
	var liveDirs []string
	if err := s.DB().QueryRow(t.Context(), `SELECT array_agg(storage_path ORDER BY id) FROM tenants WHERE partner_id <> $1`,
		testPartner).Scan(&liveDirs); err != nil {
		t.Fatal(err)
	}
	for _, d := range liveDirs {
		if _, err := os.Stat(filepath.Join(s.Storage, strings.TrimPrefix(d, "local:"))); err != nil {
			t.Errorf("live tenant %s: %v", d, err)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// columns splits a line of a table the admin commands print (two spaces or
// more between columns).
func columns(line string) []string { return regexp.MustCompile(`\s{2,}`).Split(line, -1) }

// A read-only key is refused every command with 403 forbidden_for_key and
// nothing enqueued or held, before its params are looked at; its reads go on.
func TestReadOnlyKeyRefusedWithNothingEnqueued(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway() // no worker: a command that got through would wait in the queue
	ro := s.admin("keys", "create", "--partner", "Partner A", "--read-only")
	for _, c := range []struct {
		method string
		params m
	}{
		{"createCustomer", m{"id": "C1", "name": "C1", "admin": m{"email": "a@example.com"}}},
		{"cancelOrder", m{"id": "O1"}},
		{"createUser", m{"email": ""}}, // bad params too: refused for the key first
	} {
		r := s.DoOnce(ro, envelope(c.method, c.params), "Idempotency-Key", "k-"+c.method)
		if r.Status != 403 || r.ErrorCode(t) != "forbidden_for_key" || r.Header.Get("OneOffice-Key") != "live, read-only" ||
			r.JSON(t)["livemode"] != true {
			t.Fatalf("%s with a read-only key: %d %s %v", c.method, r.Status, r.Body, r.Header)
		}
	}
	if n := commandsQueued(t, s); n != 0 {
		t.Fatalf("%d commands queued for a read-only key", n)
	}
	if keys, err := redisClient(t, s.RedisURL).Keys(t.Context(), "*k-create*").Result(); err != nil || len(keys) != 0 {
		t.Fatalf("idempotency records %v (%v) for a refused call", keys, err)
	}
	if r := s.Do(ro, envelope("getCustomer", m{"id": "C1"})); r.Status != 404 || r.ErrorCode(t) != "customer_not_found" {
		t.Fatalf("getCustomer with a read-only key: %d %s", r.Status, r.Body)
	}
	if r := s.Do(ro, envelope("listCustomers", m{})); r.Status != 200 {
		t.Fatalf("listCustomers with a read-only key: %d %s", r.Status, r.Body)
	}
}

// keys roll prints a new key; the old one works until its expiry (moved
// into the past in the database here, rather than waited for), then is 401;
// keys list shows both, never a key.
func TestKeysRollOldKeyWorksUntilItsExpiry(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	old := s.Key
	fresh := s.admin("keys", "roll", old, "--expires-in", "24h")
	if !strings.HasPrefix(fresh, "oo_") || fresh == old || strings.ContainsAny(fresh, " \n") {
		t.Fatalf("keys roll printed %q, want only a new key", fresh)
	}
	if !s.keyWorks(old) || !s.keyWorks(fresh) {
		t.Fatal("after a roll with 24h, the old or the new key is refused")
	}
	var hours float64
	if err := s.DB().QueryRow(t.Context(), `SELECT extract(epoch FROM expires_at - now()) / 3600 FROM api_keys
		WHERE prefix = $1`, old[:9]).Scan(&hours); err != nil || hours < 23.9 || hours > 24 {
		t.Fatalf("old key expires in %.2f h (%v), want 24", hours, err)
	}
	list := s.admin("keys", "list", "--partner", "Partner A")
	lines := strings.Split(list, "\n")
	if len(lines) != 3 || strings.Contains(list, old) || strings.Contains(list, fresh) {
		t.Fatalf("keys list:\n%s", list)
	}
	// PREFIX KIND ACCESS CREATED EXPIRES LAST-USED REVOKED
	o, n := columns(lines[1]), columns(lines[2])
	minute := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d$`)
	if len(o) != 7 || o[0] != old[:9]+"…" || o[1] != "live" || o[2] != "full" || !minute.MatchString(o[3]) ||
		!minute.MatchString(o[4]) || !minute.MatchString(o[5]) || o[6] != "-" ||
		len(n) != 7 || n[0] != fresh[:9]+"…" || n[4] != "-" || !minute.MatchString(n[5]) {
		t.Fatalf("keys list:\n%s", list)
	}
	if _, err := s.DB().Exec(t.Context(), `UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE prefix = $1`,
		old[:9]); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(settleWithin); s.keyWorks(old); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the expired key still works %v after its expiry", settleWithin)
		}
	}
	if !s.keyWorks(fresh) {
		t.Fatal("the new key stopped working")
	}
	if run := s.adminStdin(old+"\n", "keys", "roll", "-"); run.exit == 0 {
		t.Fatalf("rolling an expired key: exit 0, %q", run.stdout)
	}
}

// Every admin command that changes something writes an audit row: who (the
// operating-system user), what, on whom; audit list prints them.
func TestAdminCommandsAreAudited(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	s := NewStack(t, webhookEnv...)
	s.StartGateway() // declares the queues dlq replay reads
	who := audit.OSUser()
	test := s.testKey("Partner A", "--read-only")
	fresh := s.admin("keys", "roll", s.Key, "--expires-in", "1h")
	s.admin("keys", "revoke", fresh)
	s.setEndpoint("Partner A", r.URL())
	s.admin("webhooks", "set", "--partner", "Partner A", "--test", "--url", r.URL())
	s.admin("webhooks", "disable", "--partner", "Partner A", "--test")
	s.admin("webhooks", "replay", "--partner", "Partner A", "--since", "1h")
	s.admin("dlq", "replay")
	want := []struct{ action, partner, target string }{
		{"keys create", "Partner A", s.Key[:9]}, // NewStack's
		{"keys create", "Partner A (test)", test[:14]},
		{"keys roll", "Partner A", s.Key[:9]},
		{"keys revoke", "Partner A", fresh[:9]},
		{"webhooks set", "Partner A", r.URL()},
		{"webhooks set", "Partner A (test)", r.URL()},
		{"webhooks disable", "Partner A (test)", "-"},
		{"webhooks replay", "Partner A", "-"},
		{"dlq replay", "-", "-"},
	}
	out := strings.Split(s.admin("audit", "list", "--since", "1h"), "\n")
	if len(out) != len(want)+1 {
		t.Fatalf("audit list:\n%s\nwant %d rows", strings.Join(out, "\n"), len(want))
	}
	for i, w := range want {
		f := columns(out[i+1])
		if len(f) < 5 || f[1] != who || f[2] != w.action {
			t.Errorf("audit row %d: %q, want %s by %s", i, out[i+1], w.action, who)
			continue
		}
		if !strings.Contains(out[i+1], w.partner) || !strings.Contains(out[i+1], w.target) {
			t.Errorf("audit row %d: %q, want partner %s, target %s", i, out[i+1], w.partner, w.target)
		}
	}
	if n := s.Count(`SELECT count(*) FROM admin_audit WHERE actor = $1`, who); n != len(want) {
		t.Fatalf("%d audit rows in the database, want %d", n, len(want))
	}
	if got := s.admin("audit", "list", "--since", "1ns"); strings.Count(got, "\n") != 0 {
		t.Fatalf("audit list --since 1ns:\n%s\nwant only the header", got)
	}
}

// The events of a test key's calls go to the partner's test endpoint
// (webhooks set --test), those of its live keys to the live endpoint.
func TestSandboxWebhooksGoToTheTestEndpoint(t *testing.T) {
	t.Parallel()
	live, test := newReceiver(t), newReceiver(t)
	s := webhookStack(t, live)
	testKey := s.testKey("Partner A")
	secret := s.admin("webhooks", "set", "--partner", "Partner A", "--test", "--url", test.URL())
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("webhooks set --test printed %q", secret)
	}
	test.trust(secret)
	callsT := s.run(testKey, commands()[:3])
	callsL := s.run(s.Key, commands()[:2])
	test.waitFor("the test events", func(got []delivery) bool { return len(got) >= len(callsT) })
	live.waitFor("the live events", func(got []delivery) bool { return len(got) >= len(callsL) })
	s.waitEventsDone(len(callsT) + len(callsL))
	checkEvents(t, callsT, test.deliveries())
	checkEvents(t, callsL, live.deliveries())
}
