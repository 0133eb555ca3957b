package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountStorage mounts a small tmpfs on the stack's STORAGE_ROOT, so that the
// test can make it read-only; it fails under CI when it cannot (it needs
// root), and is skipped elsewhere. Call it before starting the processes:
// they are stopped before it is unmounted.
func mountStorage(t *testing.T, s *Stack) {
	t.Helper()
	if err := syscall.Mount("tmpfs", s.Storage, "tmpfs", 0, "size=4m,mode=0750"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount a tmpfs on STORAGE_ROOT (run as root): %v", err)
		}
		t.Skipf("mount a tmpfs on STORAGE_ROOT (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(s.Storage, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount STORAGE_ROOT: %v", err)
		}
	})
}

func remount(t *testing.T, dir string, flags uintptr) {
	t.Helper()
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|flags, ""); err != nil {
		t.Fatalf("remount %s: %v", dir, err)
	}
}

// A customer created while the tenant disk is read-only is answered 202 and
// waits in the worker, which retries it; once the disk is writable again the
// same call gets the customer, provisioned once, and nothing was
// dead-lettered. A worker started on the read-only disk refuses to start,
// naming STORAGE_ROOT.
func TestCustomerCreatedWhileTheDiskIsReadOnly(t *testing.T) {
	s := NewStack(t, "RPC_TIMEOUT=1s")
	mountStorage(t, s)
	s.StartGateway()
	w := s.StartWorker()
	s.Want(200, "createCustomer", primer)

	remount(t, s.Storage, syscall.MS_RDONLY)
	c2 := m{"id": "C2", "name": "C2", "admin": m{"email": "c2@example.com"}}
	if r := s.CallOnce("createCustomer", c2); r.Status != 202 {
		t.Fatalf("createCustomer on a read-only disk: %d %s, want 202 pending", r.Status, r.Body)
	}
	waitUntil(t, settleWithin, "the worker retrying the storage", func() bool {
		wm := scrape(t, w)
		return value(wm, "oneoffice_worker_retries_total", map[string]string{"dependency": "storage"}) >= 1 &&
			value(wm, "oneoffice_worker_storage_errors_total", map[string]string{"errno": "EROFS"}) >= 1
	})
	// The customer that exists is still answered: its directory is there.
	if got := s.Want(200, "getCustomer", m{"id": "ABC"}); got["remoteId"] != "ABC" {
		t.Fatalf("getCustomer on a read-only disk: %v", got)
	}
	late := s.launch(bins.Worker(), nil)
	<-late.Done()
	if !strings.Contains(late.Log(), "STORAGE_ROOT="+s.Storage+" must be a writable directory") {
		t.Fatalf("a worker started on a read-only disk: want a refusal naming STORAGE_ROOT; log:\n%s", late.Log())
	}
	if code := late.Cmd().ProcessState.ExitCode(); code == 0 {
		t.Fatalf("a worker started on a read-only disk exited %d, want a failure", code)
	}

	remount(t, s.Storage, 0)
	got := s.Eventually(200, settleWithin, "createCustomer", c2).JSON(t)
	if got["remoteId"] != "C2" {
		t.Fatalf("createCustomer once writable: %v", got)
	}
	if n := s.Count(`SELECT count(*) FROM tenants WHERE remote_id = 'C2'`); n != 1 {
		t.Fatalf("%d tenants C2, want 1", n)
	}
	var path string
	if err := s.DB().QueryRow(t.Context(), `SELECT storage_path FROM tenants WHERE remote_id = 'C2'`).Scan(&path); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(s.Storage, strings.TrimPrefix(path, "local:"))); err != nil || !st.IsDir() {
		t.Fatalf("C2's directory %s: %v", path, err)
	}
	wm := scrape(t, w)
	if n := value(wm, "oneoffice_worker_dead_lettered_total", nil); n != 0 {
		t.Fatalf("%v commands dead-lettered, want none", n)
	}
}

// A worker sweeps at start: a tenant directory no row records, untouched for
// STORAGE_ORPHAN_GRACE, is removed and counted; the tenants' own stay.
func TestWorkerSweepsOrphanDirectories(t *testing.T) {
	t.Parallel()
	s := NewStack(t, "STORAGE_ORPHAN_GRACE=1m")
	s.StartGateway()
	w := s.StartWorker()
	s.Want(200, "createCustomer", primer)
	w.Stop()
	var partner int64
	if err := s.DB().QueryRow(t.Context(), `SELECT partner_id FROM tenants WHERE remote_id = 'ABC'`).Scan(&partner); err != nil {
		t.Fatal(err)
	}
	pdir := filepath.Join(s.Storage, "p"+strconv.FormatInt(partner, 10))
	old := time.Now().Add(-time.Hour)
	for _, name := range []string{"c-ABC", "c-GONE"} {
		dir := filepath.Join(pdir, name)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(dir, old, old); err != nil {
			t.Fatal(err)
		}
	}
	w = s.StartWorker()
	waitMetric(t, w, "oneoffice_worker_storage_orphans_removed_total", 1)
	entries, err := os.ReadDir(pdir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "c-ABC" {
		t.Fatalf("left %v, want only the customer's c-ABC", entries)
	}
}
