package provision

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// A tenant's storage is a directory under STORAGE_ROOT, made before the
// tenant's row commits, so that a row never exists without its directory. A
// directory may then outlive a failed or never-committed insert (the insert
// failed, the transaction rolled back, the process died between the two):
// the sweeper (sweep.go) removes such orphans once no one has made or reused
// them for OrphanGrace. A conflict on the customer id leaves none: the path
// is the partner's and the id's, so it is the existing customer's directory. Every attempt at making a directory that exists
// already touches it (sets its modification time), which is what keeps the
// sweeper off a directory a command is about to record.

// Errno labels of oneoffice_worker_storage_errors_total: the failures of a
// full, over-quota, read-only or failing disk, which pass once an operator has
// acted and are retried (IsTransient), and the rest.
const (
	errnoENOSPC = "ENOSPC"
	errnoEDQUOT = "EDQUOT"
	errnoEROFS  = "EROFS"
	errnoEIO    = "EIO"
	errnoEACCES = "EACCES"
	errnoOther  = "other"
)

var storageErrnos = []string{errnoENOSPC, errnoEDQUOT, errnoEROFS, errnoEIO, errnoEACCES, errnoOther}

// StorageError is a failure to make a tenant's storage location.
type StorageError struct {
	Path string // relative to STORAGE_ROOT
	Err  error
}

func (e *StorageError) Error() string { return "tenant storage " + e.Path + ": " + e.Err.Error() }
func (e *StorageError) Unwrap() error { return e.Err }

// Dependency names what failed, for the consumer's retry metric.
func (e *StorageError) Dependency() string { return "storage" }

// Transient reports whether the disk may take the directory once an operator
// freed space, raised the quota, remounted it read-write or replaced it: the
// command then waits and is retried rather than dead-lettered. A refused
// permission or a missing root is a misconfiguration a retry does not mend.
func (e *StorageError) Transient() bool {
	switch errnoLabel(e.Err) {
	case errnoENOSPC, errnoEDQUOT, errnoEROFS, errnoEIO:
		return true
	}
	return false
}

// errnoLabel is err's errno as a metric label, one of storageErrnos.
func errnoLabel(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return errnoOther
	}
	switch errno {
	case syscall.ENOSPC:
		return errnoENOSPC
	case syscall.EDQUOT:
		return errnoEDQUOT
	case syscall.EROFS:
		return errnoEROFS
	case syscall.EIO:
		return errnoEIO
	case syscall.EACCES, syscall.EPERM:
		return errnoEACCES
	}
	return errnoOther
}

// tenantPath is a tenant's storage location relative to the storage root.
func tenantPath(partner int64, name string) string {
	return filepath.Join("p"+strconv.FormatInt(partner, 10), name)
}

// storageURI is a tenant's storage location as its row records it: a URI
// whose scheme names the storage backend. "local:" is the directory backend,
// its path relative to STORAGE_ROOT; workers on several hosts share it through
// one volume mounted at STORAGE_ROOT on each (docs/SCALING.md). Another
// backend would record its own scheme, so rows keep saying where a tenant is.
func storageURI(rel string) string { return "local:" + filepath.ToSlash(rel) }

// noStorage is the storage location of a test (sandbox) tenant: it has none
// (SPEC section 6).
const noStorage = "none:"

// test reports whether c is a call of a test key.
func (c *call) test() bool { return c.cmd != nil && c.cmd.Test }

// makeStorage creates a tenant's storage location before the tenant's row
// commits (createCustomer calls it before its insert, the consumer tenant inside
// its transaction), so a failure leaves no tenant row; a directory left by a
// failed insert is reused by the retry, and touched so that the sweeper leaves
// it alone for OrphanGrace. A failure is a *StorageError, counted by errno.
func (s *Service) makeStorage(rel string) error {
	dir := filepath.Join(s.cfg.StorageRoot, rel)
	s.mkdir.Lock()
	defer s.mkdir.Unlock()
	err := s.makeDir(dir)
	if err != nil {
		s.m.storageErrors.WithLabelValues(errnoLabel(err)).Inc()
		return &StorageError{Path: rel, Err: err}
	}
	return nil
}

// makeDir makes dir, or touches it when it exists. One mkdir on the hot path;
// the partner's directory only when it is missing.
func (s *Service) makeDir(dir string) error {
	for range 3 {
		err := s.fs.mkdir(dir, 0o750)
		if errors.Is(err, fs.ErrNotExist) {
			if err = s.fs.mkdir(filepath.Dir(dir), 0o750); err == nil || errors.Is(err, fs.ErrExist) {
				err = s.fs.mkdir(dir, 0o750)
			}
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		// A touch that fails otherwise is left: on a read-only disk, say, the
		// sweeper cannot remove the directory either.
		now := time.Now()
		if err := os.Chtimes(dir, now, now); !errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		// The sweeper took it away between the two: make it again.
	}
	return fmt.Errorf("mkdir %s: removed again and again while being made", dir)
}

// fileSystem is what makeStorage asks of the file system; tests replace it
// to fail as a full or read-only disk does.
type fileSystem struct {
	mkdir func(path string, perm fs.FileMode) error
}

var osFileSystem = fileSystem{mkdir: os.Mkdir}

// CheckStorageRoot makes sure the worker can make tenant directories under
// root: it makes root when it is missing, then makes and removes a probe
// directory in it. The error names STORAGE_ROOT and what is wrong.
func CheckStorageRoot(root string) error {
	if err := os.MkdirAll(root, 0o750); err != nil {
		return fmt.Errorf("STORAGE_ROOT=%s must be a directory: %w", root, err)
	}
	probe, err := os.MkdirTemp(root, ".probe-")
	if err == nil {
		err = os.Remove(probe)
	}
	if err != nil {
		return fmt.Errorf("STORAGE_ROOT=%s must be a writable directory: %w", root, err)
	}
	return nil
}
