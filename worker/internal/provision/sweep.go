package provision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The sweeper removes the tenant directories that no tenant row records: those
// of an insert that failed or never committed. A directory is an orphan when
// no row names it and it was neither made nor reused (touched, makeDir) for
// OrphanGrace. It is removed in three steps, so that a command reusing it at
// the same moment keeps it:
//
//  1. rename it aside, in its partner's directory, to a name no tenant has
//     (".swept-<token>-<name>"): a command that reuses it after this makes a
//     new directory under its name;
//  2. read the modification time of what was renamed: a command that touched
//     it between the sweeper's first look and the rename is about to record
//     it, and gets it back under its name;
//  3. otherwise remove it, if it is empty.
//
// A command's attempt touches its directory before its insert, and an insert
// that took longer than half the grace makes the directory again (outlivedGrace),
// so a row never lasts without its directory. Workers side by side take turns
// by an advisory lock; without it their renames would still exclude each other
// (only one rename of a name succeeds), the lock only saves the second walk.
// Only names a tenant can have are touched ("c-<id>", "consumer"), only empty
// directories removed: an orphan holding files is kept for an operator. A file
// system that stamped a renamed directory's modification time would make the
// sweeper put every orphan back: it errs on the side of keeping.

const (
	// DefaultOrphanGrace is OrphanGrace when unset.
	DefaultOrphanGrace = time.Hour
	// sweepEvery is how often a worker tries to sweep; one at a time does.
	sweepEvery = 15 * time.Minute
	// sweepBatch bounds the directories looked up in one query.
	sweepBatch = 1000
	// sweepLockID is the advisory lock the sweeping worker holds.
	sweepLockID int64 = 0x6f6f_7377_6565_70 // "oo" "sweep"
	trashPrefix       = ".swept-"
)

// sweepResult is what one sweep did.
type sweepResult struct {
	removed  int // orphans removed
	nonEmpty int // orphans kept because they hold files
	skipped  bool
}

// SweepStorage removes orphan tenant directories every sweepEvery until ctx
// ends.
func (s *Service) SweepStorage(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		r, err := s.sweepStorage(ctx, time.Now().Add(-s.cfg.OrphanGrace))
		switch {
		case err != nil && ctx.Err() == nil:
			log.WarnContext(ctx, "sweeping tenant storage failed", "error", err, "removed", r.removed)
		case r.removed > 0 || r.nonEmpty > 0:
			log.InfoContext(ctx, "tenant storage swept", "removed", r.removed, "kept_not_empty", r.nonEmpty)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepStorage sweeps the directories untouched since cutoff, unless another
// worker is sweeping.
func (s *Service) sweepStorage(ctx context.Context, cutoff time.Time) (sweepResult, error) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return sweepResult{}, err
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, sweepLockID).Scan(&locked); err != nil {
		return sweepResult{}, err
	}
	if !locked {
		return sweepResult{skipped: true}, nil
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, sweepLockID); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx)) // a closed session holds no lock
		}
	}()
	return s.sweepRoot(ctx, cutoff)
}

// sweepRoot sweeps every partner's directory.
func (s *Service) sweepRoot(ctx context.Context, cutoff time.Time) (sweepResult, error) {
	var r sweepResult
	entries, err := os.ReadDir(s.cfg.StorageRoot)
	if err != nil {
		return r, err
	}
	token := newToken()
	var errs []error
	for _, e := range entries {
		partner, ok := partnerOf(e.Name())
		if !ok || !e.IsDir() || ctx.Err() != nil {
			continue
		}
		if err := s.sweepPartner(ctx, partner, filepath.Join(s.cfg.StorageRoot, e.Name()), token, cutoff, &r); err != nil {
			errs = append(errs, err)
		}
	}
	return r, errors.Join(append(errs, ctx.Err())...)
}

// swept is a directory the sweeper looks at: a tenant's name untouched since
// the cutoff, or one renamed aside by a sweep that did not finish.
type swept struct {
	name  string // the tenant's name
	trash string // its name aside; "" when it is still under its own
}

// sweepPartner sweeps the directories of one partner.
func (s *Service) sweepPartner(ctx context.Context, partner int64, dir, token string, cutoff time.Time, r *sweepResult) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var found []swept
	for _, e := range entries {
		if name, ok := trashed(e.Name()); ok && e.IsDir() {
			found = append(found, swept{name: name, trash: e.Name()})
			continue
		}
		if !tenantName(e.Name()) || !e.IsDir() {
			continue
		}
		if info, err := e.Info(); err == nil && !info.ModTime().After(cutoff) {
			found = append(found, swept{name: e.Name()})
		}
	}
	var errs []error
	for len(found) > 0 && ctx.Err() == nil {
		batch := found[:min(len(found), sweepBatch)]
		found = found[len(batch):]
		recorded, err := s.recordedNames(ctx, partner, batch)
		if err != nil {
			return err
		}
		for _, d := range batch {
			if err := s.sweepOne(dir, d, token, recorded[d.name], cutoff, r); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// sweepOne removes the directory d if it is an orphan, or puts it back under
// its name when a sweep left it aside and it is not.
func (s *Service) sweepOne(dir string, d swept, token string, recorded bool, cutoff time.Time, r *sweepResult) error {
	if d.trash == "" {
		if recorded {
			return nil
		}
		if empty, err := isEmpty(filepath.Join(dir, d.name)); err != nil || !empty {
			if err == nil {
				r.nonEmpty++
			}
			return ignoreGone(err)
		}
		d.trash = trashPrefix + token + "-" + d.name
		if err := os.Rename(filepath.Join(dir, d.name), filepath.Join(dir, d.trash)); err != nil {
			return ignoreGone(err) // another sweeper took it, or a command's rename back raced
		}
	}
	removed, err := s.settle(dir, d, recorded, cutoff)
	if removed {
		r.removed++
	}
	return err
}

// settle removes d's directory, set aside, unless a tenant row names it or a
// command touched it since cutoff: then it goes back under its name.
func (s *Service) settle(dir string, d swept, recorded bool, cutoff time.Time) (bool, error) {
	aside, home := filepath.Join(dir, d.trash), filepath.Join(dir, d.name)
	info, err := os.Lstat(aside)
	if err != nil {
		return false, ignoreGone(err)
	}
	if !recorded && !info.ModTime().After(cutoff) {
		err := os.Remove(aside) // only an empty directory
		if err == nil {
			s.m.orphansRemoved.Inc()
			return true, nil
		}
		if !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, fs.ErrExist) {
			return false, ignoreGone(err)
		}
	}
	// Back under its name, over the empty directory a command may have made
	// meanwhile; if that one holds files already, the one aside is not needed.
	err = os.Rename(aside, home)
	if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, fs.ErrExist) {
		if os.Remove(aside) == nil {
			return false, nil
		}
	}
	return false, ignoreGone(err)
}

// recordedNames looks up which of the directories of partner a tenant row
// names: by its storage URI, or, to be safe, by the tenant it was made for.
func (s *Service) recordedNames(ctx context.Context, partner int64, batch []swept) (map[string]bool, error) {
	ids := make([]string, 0, len(batch))
	for _, d := range batch {
		if id, ok := strings.CutPrefix(d.name, "c-"); ok {
			ids = append(ids, id)
		}
	}
	rows, err := s.db.Query(ctx, `SELECT storage_path, coalesce(remote_id, ''), kind FROM tenants
		WHERE partner_id = $1 AND (remote_id = ANY($2) OR kind = 'consumer')`, partner, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	prefix := storageURI(tenantPath(partner, "")) + "/"
	recorded := make(map[string]bool, len(batch))
	for rows.Next() {
		var uri, remote, kind string
		if err := rows.Scan(&uri, &remote, &kind); err != nil {
			return nil, err
		}
		if name, ok := strings.CutPrefix(uri, prefix); ok {
			recorded[name] = true
		}
		if remote != "" {
			recorded["c-"+remote] = true
		}
		if kind == "consumer" {
			recorded["consumer"] = true
		}
	}
	return recorded, rows.Err()
}

// partnerOf reads a partner's directory name, p<id>.
func partnerOf(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, "p")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(digits, 10, 64)
	return id, err == nil && id > 0 && "p"+strconv.FormatInt(id, 10) == name
}

// tenantName reports whether name is one a tenant's directory has.
func tenantName(name string) bool {
	return name == "consumer" || strings.HasPrefix(name, "c-") && len(name) > len("c-")
}

// trashed reads a name set aside by a sweep, .swept-<token>-<name>.
func trashed(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, trashPrefix)
	if !ok {
		return "", false
	}
	_, tenant, ok := strings.Cut(rest, "-")
	return tenant, ok && tenantName(tenant)
}

func newToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// isEmpty reports whether the directory holds nothing.
func isEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// ignoreGone drops the error of a directory that is gone: another sweeper or
// a command got there first.
func ignoreGone(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
