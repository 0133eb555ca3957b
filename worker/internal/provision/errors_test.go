package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestIsTransient(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("query: %w", io.ErrUnexpectedEOF), true},
		{&pgconn.PgError{Code: "57P01"}, true}, // admin shutdown
		{&pgconn.PgError{Code: "53300"}, true}, // too many connections
		{&pgconn.PgError{Code: "40001"}, true}, // serialization failure
		{fmt.Errorf("x: %w", syscall.ECONNREFUSED), true},
		{context.DeadlineExceeded, true},
		{&pgconn.PgError{Code: "23503"}, false}, // foreign key: permanent
		{&pgconn.PgError{Code: "23514"}, false}, // check violation
		{fmt.Errorf("%w: bad", ErrInvalidCommand), false},
		{&os.PathError{Op: "mkdir", Path: "/x", Err: syscall.EACCES}, false},
		{errors.New("something else"), false},
	}
	for _, c := range cases {
		if got := IsTransient(c.err); got != c.want {
			t.Errorf("IsTransient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
