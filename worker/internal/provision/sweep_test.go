package provision

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	unixsys "golang.org/x/sys/unix"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// orphan makes a directory of partner's that no row records, last touched at.
func orphan(t *testing.T, root string, partner int64, name string, at time.Time) string {
	t.Helper()
	dir := filepath.Join(root, tenantPath(partner, name))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	age(t, dir, at)
	return dir
}

func age(t *testing.T, dir string, at time.Time) {
	t.Helper()
	if err := os.Chtimes(dir, at, at); err != nil {
		t.Fatal(err)
	}
}

// names lists a directory.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func removed(s *Service) float64 { return testutil.ToFloat64(s.m.orphansRemoved) }

// The sweeper removes the empty tenant directories that no row records and
// that were not made or reused for the grace; it leaves the tenants' own,
// recent ones, those holding files and names that are not a tenant's.
func TestSweeperRemovesOrphansOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := time.Now()
	old, cutoff := now.Add(-2*time.Hour), now.Add(-time.Hour)
	f.want(protocol.CreateCustomer, m{"id": "KEPT", "name": "Kept", "admin": m{"email": "a@example.com"}}, 200)
	age(t, f.customerDir("KEPT"), old)
	f.want(protocol.CreateUser, m{"email": "ann@example.com"}, 200) // the consumer tenant, with its directory
	age(t, filepath.Join(f.root, tenantPath(f.partner, "consumer")), old)
	orphan(t, f.root, f.partner, "c-GONE", old)
	orphan(t, f.root, f.partner, "c-RECENT", now)
	orphan(t, f.root, f.partner, "notes", old)
	full := orphan(t, f.root, f.partner, "c-FULL", old)
	if err := os.WriteFile(filepath.Join(full, "data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	age(t, full, old)
	other := f.newPartner(t, "Q")
	orphan(t, f.root, other, "c-KEPT", old)   // the same id at another partner is not KEPT's
	orphan(t, f.root, other, "consumer", old) // no consumer tenant there

	r, err := f.svc.sweepStorage(context.Background(), cutoff)
	if err != nil || r.skipped {
		t.Fatalf("sweep: %+v, %v", r, err)
	}
	want := []string{"c-FULL", "c-KEPT", "c-RECENT", "consumer", "notes"}
	if got := names(t, filepath.Join(f.root, tenantPath(f.partner, ""))); !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
	if got := names(t, filepath.Join(f.root, tenantPath(other, ""))); len(got) != 0 {
		t.Fatalf("left %v at the other partner, want nothing", got)
	}
	if r.removed != 3 || r.nonEmpty != 1 || removed(f.svc) != 3 {
		t.Fatalf("sweep %+v, oneoffice_worker_storage_orphans_removed_total %v; want 3 removed, 1 kept not empty",
			r, removed(f.svc))
	}
}

// A customer whose insert the database refuses leaves its directory; the
// sweeper removes it once the grace has passed, and not before.
func TestSweeperRemovesTheDirectoryOfAFailedInsert(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.db.Exec(ctx, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
		$$BEGIN RAISE EXCEPTION 'refused for the test'; END$$;
		CREATE TRIGGER refuse BEFORE INSERT ON tenants FOR EACH ROW WHEN (NEW.remote_id = 'BAD') EXECUTE FUNCTION refuse()`); err != nil {
		t.Fatal(err)
	}
	_, err := f.createCustomer("BAD")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || IsTransient(err) {
		t.Fatalf("createCustomer refused by the database: %v, want a permanent database error", err)
	}
	dir := f.customerDir("BAD")
	if !isDir(dir) || f.customerRows("BAD") != 0 {
		t.Fatalf("after the refused insert: directory %v, %d rows; want the directory and no row", isDir(dir), f.customerRows("BAD"))
	}
	if r, err := f.svc.sweepStorage(ctx, time.Now().Add(-time.Hour)); err != nil || r.removed != 0 || !isDir(dir) {
		t.Fatalf("sweep within the grace: %+v, %v; directory %v, want it kept", r, err, isDir(dir))
	}
	age(t, dir, time.Now().Add(-2*time.Hour))
	if r, err := f.svc.sweepStorage(ctx, time.Now().Add(-time.Hour)); err != nil || r.removed != 1 || isDir(dir) {
		t.Fatalf("sweep after the grace: %+v, %v; directory %v, want it removed", r, err, isDir(dir))
	}
}

// The steps of the sweeper against a command reusing an orphan at the same
// moment, in each order: the command's directory is never lost.
func TestSweeperLeavesADirectoryBeingReused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	old, cutoff := time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	pdir := filepath.Join(f.root, tenantPath(f.partner, ""))
	var r sweepResult

	// The sweeper saw the orphan untouched; the command reused it (touching
	// it) before the sweeper set it aside: it is put back.
	dir := orphan(t, f.root, f.partner, "c-A", old)
	if res, err := f.createCustomer("A"); err != nil || res.Status != 200 {
		t.Fatalf("createCustomer: %d, %v", res.Status, err)
	}
	if err := f.svc.sweepOne(pdir, swept{name: "c-A"}, "t1", false, cutoff, &r); err != nil || r.removed != 0 || !isDir(dir) {
		t.Fatalf("sweeping a directory touched after the sweeper's look: %+v, %v; directory %v", r, err, isDir(dir))
	}

	// The sweeper set the orphan aside first; the command makes its
	// directory anew, and the one aside is removed.
	dir = orphan(t, f.root, f.partner, "c-B", old)
	aside := swept{name: "c-B", trash: trashPrefix + "t2-c-B"}
	if err := os.Rename(dir, filepath.Join(pdir, aside.trash)); err != nil {
		t.Fatal(err)
	}
	if res, err := f.createCustomer("B"); err != nil || res.Status != 200 {
		t.Fatalf("createCustomer: %d, %v", res.Status, err)
	}
	if err := f.svc.sweepOne(pdir, aside, "t2", false, cutoff, &r); err != nil || r.removed != 1 || !isDir(dir) {
		t.Fatalf("settling a directory set aside before the command: %+v, %v; directory %v", r, err, isDir(dir))
	}

	// A sweep that died with a recorded tenant's directory aside: the next
	// one puts it back; one aside with no tenant is removed.
	dir = f.customerDir("A")
	if err := os.Rename(dir, filepath.Join(pdir, trashPrefix+"dead-c-A")); err != nil {
		t.Fatal(err)
	}
	orphan(t, f.root, f.partner, trashPrefix+"dead-c-GONE", old)
	if r, err := f.svc.sweepStorage(context.Background(), cutoff); err != nil || r.removed != 1 {
		t.Fatalf("sweep after a sweep died: %+v, %v", r, err)
	}
	if got, want := names(t, pdir), []string{"c-A", "c-B"}; !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
}

// Workers side by side: two sweeping at once (past the lock that normally
// makes them take turns) while commands reuse half of the orphans. Every
// customer keeps its directory, every other orphan is removed, once.
func TestSweepersSideBySide(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := New(f.db, f.svc.cfg, NewMetrics(prometheus.NewRegistry()))
	const n = 200
	old := time.Now().Add(-2 * time.Hour)
	for i := range n {
		orphan(t, f.root, f.partner, fmt.Sprintf("c-O%d", i), old)
	}
	madeBefore := born(t, f.customerDir(fmt.Sprint("O", n-1)))
	var creators, sweepers sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 16)
	for w := range 4 {
		creators.Add(1)
		go func() {
			defer creators.Done()
			for i := w; i < n/2; i += 4 {
				if res, err := f.createCustomer(fmt.Sprintf("O%d", i)); err != nil || res.Status != 200 {
					errs <- fmt.Errorf("createCustomer O%d: %d %s, %v", i, res.Status, res.Body, err)
					return
				}
			}
		}()
	}
	for _, s := range []*Service{f.svc, other} {
		sweepers.Add(1)
		go func() {
			defer sweepers.Done()
			for {
				if _, err := s.sweepRoot(context.Background(), time.Now().Add(-time.Hour)); err != nil {
					errs <- err
					return
				}
				select {
				case <-done:
					return
				default:
				}
			}
		}()
	}
	creators.Wait()
	close(done)
	sweepers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// One more sweep finds what the concurrent ones left.
	if _, err := f.svc.sweepRoot(context.Background(), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, name := range names(t, filepath.Join(f.root, tenantPath(f.partner, ""))) {
		left = append(left, strings.TrimPrefix(name, "c-"))
	}
	var want []string
	for i := range n / 2 {
		want = append(want, fmt.Sprintf("O%d", i))
	}
	slices.Sort(left)
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Fatalf("left %v,\nwant the customers' %v", left, want)
	}
	// An orphan the sweepers took before its command came was made anew:
	// it was removed too, once.
	renewed := 0
	for _, id := range want {
		if born(t, f.customerDir(id)).After(madeBefore) {
			renewed++
		}
	}
	if got := removed(f.svc) + removed(other); got != float64(n/2+renewed) {
		t.Fatalf("removed %v orphans in all, want %d: %d without a customer and %d made anew", got, n/2+renewed, n/2, renewed)
	}
	t.Logf("%d of the %d reused orphans were removed before their command came", renewed, n/2)
}

// born is when the directory at path was made: a directory made anew may get
// the number of one removed, but not its birth time.
func born(t *testing.T, path string) time.Time {
	t.Helper()
	var st unixsys.Statx_t
	if err := unixsys.Statx(unixsys.AT_FDCWD, path, 0, unixsys.STATX_BTIME, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mask&unixsys.STATX_BTIME == 0 {
		t.Fatalf("%s: the file system keeps no birth time", path)
	}
	return time.Unix(st.Btime.Sec, int64(st.Btime.Nsec))
}

// While one worker sweeps, another's sweep does nothing.
func TestOneSweeperAtATime(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	dir := orphan(t, f.root, f.partner, "c-GONE", time.Now().Add(-2*time.Hour))
	conn, err := f.db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, sweepLockID); err != nil {
		t.Fatal(err)
	}
	if r, err := f.svc.sweepStorage(ctx, time.Now().Add(-time.Hour)); err != nil || !r.skipped || !isDir(dir) {
		t.Fatalf("sweep while another runs: %+v, %v; want it skipped, the orphan left", r, err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, sweepLockID); err != nil {
		t.Fatal(err)
	}
	if r, err := f.svc.sweepStorage(ctx, time.Now().Add(-time.Hour)); err != nil || r.removed != 1 || isDir(dir) {
		t.Fatalf("sweep after the other: %+v, %v; want the orphan removed", r, err)
	}
}

// An insert that took longer than half the grace after its directory was
// made makes the directory again: the sweeper may have taken it meanwhile.
func TestSlowInsertMakesItsDirectoryAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.svc.cfg.OrphanGrace = time.Nanosecond
	var mu sync.Mutex
	var made []string
	f.svc.fs.mkdir = func(path string, perm os.FileMode) error {
		mu.Lock()
		made = append(made, filepath.Base(path))
		mu.Unlock()
		return os.Mkdir(path, perm)
	}
	if res, err := f.createCustomer("SLOW"); err != nil || res.Status != 200 {
		t.Fatalf("createCustomer: %d, %v", res.Status, err)
	}
	if want := []string{"c-SLOW", "p" + fmt.Sprint(f.partner), "c-SLOW", "c-SLOW"}; !slices.Equal(made, want) {
		t.Fatalf("mkdir calls %v, want %v (the partner's directory, then the tenant's before and after the insert)", made, want)
	}
}
