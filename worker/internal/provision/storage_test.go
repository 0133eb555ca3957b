package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// createCustomer runs createCustomer for id and returns its result and error.
func (f *fixture) createCustomer(id string) (protocol.Result, error) {
	f.t.Helper()
	raw, _ := json.Marshal(m{"id": id, "name": "Company " + id, "admin": m{"email": "a@example.com"}})
	return f.svc.Handle(context.Background(), &protocol.Command{Method: protocol.CreateCustomer, Partner: f.partner,
		RequestID: "r-" + id, Params: raw})
}

// customerRows counts the tenant rows of id.
func (f *fixture) customerRows(id string) int {
	f.t.Helper()
	var n int
	if err := f.db.QueryRow(context.Background(), `SELECT count(*) FROM tenants WHERE partner_id = $1 AND remote_id = $2`,
		f.partner, id).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// customerDir is where id's directory is made.
func (f *fixture) customerDir(id string) string {
	return filepath.Join(f.root, tenantPath(f.partner, "c-"+id))
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// A disk that is full, over quota, read-only or failing makes createCustomer
// fail transiently (the command waits and is retried, not dead-lettered) with
// nothing recorded; the failure is counted by errno. Once the disk takes the
// directory the same command provisions the customer.
func TestStorageFailuresAreClassifiedByErrno(t *testing.T) {
	t.Parallel()
	cases := []struct {
		errno     syscall.Errno
		label     string
		transient bool
	}{
		{syscall.ENOSPC, "ENOSPC", true},
		{syscall.EDQUOT, "EDQUOT", true},
		{syscall.EROFS, "EROFS", true},
		{syscall.EIO, "EIO", true},
		{syscall.EACCES, "EACCES", false},
		{syscall.ENAMETOOLONG, "other", false},
	}
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	f.svc.m = NewMetrics(reg)
	for i, tc := range cases {
		id := fmt.Sprintf("E%d", i)
		f.svc.fs.mkdir = func(path string, _ fs.FileMode) error {
			return &os.PathError{Op: "mkdir", Path: path, Err: tc.errno}
		}
		_, err := f.createCustomer(id)
		var storageErr *StorageError
		if !errors.As(err, &storageErr) || IsTransient(err) != tc.transient {
			t.Fatalf("%s: error %v (transient %v), want a storage error, transient %v", tc.label, err, IsTransient(err), tc.transient)
		}
		if got := testutil.ToFloat64(f.svc.m.storageErrors.WithLabelValues(tc.label)); got != 1 {
			t.Errorf("%s: oneoffice_worker_storage_errors_total{errno=%q} = %v, want 1", tc.label, tc.label, got)
		}
		if n := f.customerRows(id); n != 0 {
			t.Fatalf("%s: %d tenant rows after the storage failed, want 0", tc.label, n)
		}
		f.svc.fs = osFileSystem
		if res, err := f.createCustomer(id); err != nil || res.Status != 200 {
			t.Fatalf("%s: once the disk takes it: %d %s, %v", tc.label, res.Status, res.Body, err)
		}
		if n := f.customerRows(id); n != 1 || !isDir(f.customerDir(id)) {
			t.Fatalf("%s: once the disk takes it: %d rows, directory %v", tc.label, n, isDir(f.customerDir(id)))
		}
	}
	if n, err := testutil.GatherAndCount(reg, "oneoffice_worker_storage_errors_total"); err != nil || n != len(storageErrnos) {
		t.Fatalf("storage error series: %d, %v; want every errno label from the start (%d)", n, err, len(storageErrnos))
	}
}

// mountTmpfs mounts a tmpfs of opts on a new directory; the test fails under
// CI when it cannot (it needs root), and is skipped elsewhere.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount a tmpfs (run as root): %v", err)
		}
		t.Skipf("mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// A real full disk (a tmpfs out of inodes) and a real read-only one (the
// tmpfs remounted read-only): createCustomer fails transiently with the
// disk's errno and records nothing, and succeeds once there is room again or
// the disk is writable again.
func TestFullAndReadOnlyDisk(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	root := mountTmpfs(t, "size=1m,nr_inodes=64,mode=0750")
	f.svc.cfg.StorageRoot, f.root = root, root
	if _, err := f.createCustomer("FIRST"); err != nil {
		t.Fatal(err)
	}
	// Fill the inodes.
	filler := filepath.Join(root, "filler")
	var err error
	for i := 0; err == nil; i++ {
		err = os.MkdirAll(filepath.Join(filler, fmt.Sprint(i)), 0o750)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v, want ENOSPC", err)
	}
	_, err = f.createCustomer("FULL")
	if !errors.Is(err, syscall.ENOSPC) || !IsTransient(err) || f.customerRows("FULL") != 0 {
		t.Fatalf("createCustomer on a full disk: %v (transient %v), %d rows; want a transient ENOSPC and no row",
			err, IsTransient(err), f.customerRows("FULL"))
	}
	if err := os.RemoveAll(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := f.createCustomer("FULL"); err != nil || !isDir(f.customerDir("FULL")) || f.customerRows("FULL") != 1 {
		t.Fatalf("createCustomer with room again: %v, directory %v", err, isDir(f.customerDir("FULL")))
	}

	if err := syscall.Mount("", root, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	_, err = f.createCustomer("RO")
	if !errors.Is(err, syscall.EROFS) || !IsTransient(err) || f.customerRows("RO") != 0 {
		t.Fatalf("createCustomer on a read-only disk: %v (transient %v); want a transient EROFS and no row", err, IsTransient(err))
	}
	// A customer that exists is answered on a read-only disk: its directory is there.
	if res, err := f.createCustomer("FIRST"); err != nil || res.Status != 200 {
		t.Fatalf("the same createCustomer again on a read-only disk: %d %s, %v", res.Status, res.Body, err)
	}
	if err := CheckStorageRoot(root); err == nil || !errors.Is(err, syscall.EROFS) {
		t.Fatalf("CheckStorageRoot on a read-only disk: %v, want EROFS", err)
	}
	if err := syscall.Mount("", root, "", syscall.MS_REMOUNT, ""); err != nil {
		t.Fatalf("remount read-write: %v", err)
	}
	if _, err := f.createCustomer("RO"); err != nil || !isDir(f.customerDir("RO")) || f.customerRows("RO") != 1 {
		t.Fatalf("createCustomer once writable: %v, directory %v", err, isDir(f.customerDir("RO")))
	}
}

func TestCheckStorageRoot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "a", "tenants")
	if err := CheckStorageRoot(missing); err != nil || !isDir(missing) {
		t.Fatalf("a missing root: %v, want it made", err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := CheckStorageRoot(file)
	if err == nil || !errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, fs.ErrExist) {
		t.Fatalf("a file as root: %v, want a refusal", err)
	}
	if want := "STORAGE_ROOT=" + file + " must be a directory"; err.Error()[:len(want)] != want {
		t.Fatalf("message %q, want it to start %q", err, want)
	}
	entries, _ := os.ReadDir(missing)
	if len(entries) != 0 {
		t.Fatalf("the probe left %v", entries)
	}
}
