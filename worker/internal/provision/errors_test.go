package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/oneoffice/provisioner/shared/store"
	"github.com/oneoffice/provisioner/shared/testenv"
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
		{fmt.Errorf("x: %w", syscall.ECONNRESET), true},
		{fmt.Errorf("x: %w", syscall.ECONNREFUSED), true},
		{fmt.Errorf("exec: %w", pgconn.ErrConnClosed), true},
		{context.DeadlineExceeded, true},
		{&pgconn.PgError{Code: "23503"}, false}, // foreign key: permanent
		{&pgconn.PgError{Code: "23514"}, false}, // check violation
		{fmt.Errorf("%w: bad", ErrInvalidCommand), false},
		{&os.PathError{Op: "mkdir", Path: "/x", Err: syscall.EACCES}, false},
		{fmt.Errorf("load: %w", store.ErrNotFound), false},
		// Only the driver's typed errors count, not a message that reads alike.
		{errors.New("conn closed"), false},
		{errors.New("something else"), false},
	}
	for _, c := range cases {
		if got := IsTransient(c.err); got != c.want {
			t.Errorf("IsTransient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestIsTransientClosedConn checks the errors the driver really returns for a
// connection that is gone: the server ended its session, or the client closed
// it. Both must be retried, and a later use of the connection must be known by
// its type, not by its message.
func TestIsTransientClosedConn(t *testing.T) {
	t.Parallel()
	url := testenv.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	connect := func() *pgx.Conn {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}

	t.Run("terminated by the server", func(t *testing.T) {
		victim, admin := connect(), connect()
		// With a timeout the call returns only once the session has ended, so
		// the next query cannot slip in before it.
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1, 5000)`, victim.PgConn().PID()); err != nil {
			t.Fatal(err)
		}
		_, err := victim.Exec(ctx, `SELECT 1`)
		if err == nil || !IsTransient(err) {
			t.Fatalf("first query after termination: IsTransient(%v) = false, want true", err)
		}
		_, err = victim.Exec(ctx, `SELECT 1`)
		if !errors.Is(err, pgconn.ErrConnClosed) || !IsTransient(err) {
			t.Fatalf("query on the broken connection: %v (%T), want a transient pgconn.ErrConnClosed", err, err)
		}
	})

	t.Run("closed by the client", func(t *testing.T) {
		conn := connect()
		if err := conn.Close(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := conn.Exec(ctx, `SELECT 1`)
		if !errors.Is(err, pgconn.ErrConnClosed) || !IsTransient(err) {
			t.Fatalf("query on a closed connection: %v (%T), want a transient pgconn.ErrConnClosed", err, err)
		}
	})
}
