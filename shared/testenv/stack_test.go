package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const stackCreateCustomer = `{"method":"createCustomer","params":{"id":"%s","name":"Stack Co","admin":{"email":"admin@example.com"}}}`

func TestStackServesThenLeavesNothing(t *testing.T) {
	t.Parallel()
	s, prefix := servers(t), Name("oo_st")
	st, err := s.UpStack(t.Context(), StackConfig{Name: prefix, Gateways: 2})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			st.Close(0)
		}
	}()
	if len(st.Workers) != 1 || len(st.Gateways) != 2 || len(st.APIs) != 2 || st.APIs[0] == st.APIs[1] ||
		st.Gateway != st.Gateways[0] || st.HTTPAddr != st.APIs[0] {
		t.Fatalf("stack has %d workers, gateways %v on %v, want 1 and two on their own addresses", len(st.Workers), st.Gateways, st.APIs)
	}
	for i, api := range st.APIs {
		body := fmt.Sprintf(stackCreateCustomer, fmt.Sprint("C", i))
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+api+"/", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-api-key", st.Key)
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("createCustomer through %s: status %d, want 200\ngateway:\n%s", api, resp.StatusCode, st.Gateways[i].Log())
		}
	}
	assertLeft(t, s, prefix, true)
	closed = true
	if err := st.Close(0); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertLeft(t, s, prefix, false)
	if err := st.Close(0); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStackFailingHalfWayIsUndone(t *testing.T) {
	t.Parallel()
	s, prefix := servers(t), Name("oo_st")
	// Every step but the last succeeds: no process gets ready in 1ms.
	st, err := s.UpStack(t.Context(), StackConfig{Name: prefix, ReadyTimeout: time.Millisecond})
	if err == nil {
		st.Close(0)
		t.Fatal("UpStack succeeded with a 1ms ready timeout")
	}
	if st != nil || !strings.Contains(err.Error(), "stack: processes:") {
		t.Fatalf("UpStack = %v, %v; want nil and the processes step's error", st, err)
	}
	assertLeft(t, s, prefix, false)
}

// assertLeft fails t unless the database, vhost, Redis claim and work
// directory of the stack named prefix are all there (want) or all gone.
func assertLeft(t *testing.T, s Servers, prefix string, want bool) {
	t.Helper()
	pattern := prefix + "_%"
	found := map[string]int{
		"database":       len(listed(t, s, "select datname from pg_database where datname like '"+pattern+"'")),
		"vhost":          countPrefixed(vhosts(t), prefix+"_"),
		"Redis claim":    countPrefixed(claimOwners(t), prefix+" "+prefix+"_"),
		"work directory": len(must(filepath.Glob(filepath.Join(os.TempDir(), "oneoffice-"+prefix+"-*")))),
	}
	for what, n := range found {
		if want && n != 1 || !want && n != 0 {
			t.Errorf("%d of the stack's %s found, want %v", n, what, want)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func countPrefixed(names []string, prefix string) (n int) {
	for _, name := range names {
		if strings.HasPrefix(name, prefix) {
			n++
		}
	}
	return n
}

// claimOwners are the owners of every Redis DB claim.
func claimOwners(t *testing.T) []string {
	t.Helper()
	c := claimsClient(t)
	keys, err := c.Keys(t.Context(), RedisClaimPrefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var owners []string
	for _, k := range keys {
		if o, err := c.Get(t.Context(), k).Result(); err == nil {
			owners = append(owners, o)
		}
	}
	return owners
}

func listed(t *testing.T, s Servers, sql string) []string {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, s.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func vhosts(t *testing.T) []string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "rabbitmqctl", "list_vhosts", "-q").Output()
	if err != nil {
		t.Fatalf("rabbitmqctl list_vhosts: %v", err)
	}
	return strings.Fields(string(out))
}

// A port is handed out once per process, however often the kernel offers it.
func TestPickAddrNeverGivesAPortTwice(t *testing.T) {
	seen := make(map[string]bool)
	for range 2000 {
		addr, err := PickAddr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
	}
}
