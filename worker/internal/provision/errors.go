package provision

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsTransient reports whether a failure may pass by itself (the database is
// unreachable, restarting or overloaded, the connection broke, a serialization
// conflict; the tenant storage's disk is full, over quota, read-only or failing)
// so that the command should be retried rather than dead-lettered.
// Retrying is safe even when a broken connection hides whether the statement
// committed: every method is idempotent by its unique constraints and state.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, ErrInvalidCommand) {
		return false
	}
	var storageErr *StorageError
	if errors.As(err, &storageErr) {
		return storageErr.Transient()
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "53", "57", "58": // connection, resources, operator intervention, system
			return true
		}
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	// A connection the driver has closed (its socket broke, or a cancelled
	// query made it give the connection up) fails every later use with
	// pgconn.ErrConnClosed; the pool then opens a new one for the retry.
	var connErr *pgconn.ConnectError
	var opErr *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded), pgconn.SafeToRetry(err), pgconn.Timeout(err),
		errors.Is(err, pgconn.ErrConnClosed), errors.As(err, &connErr), errors.As(err, &opErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		return true
	}
	return false
}
