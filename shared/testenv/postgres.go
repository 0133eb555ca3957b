package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// attemptTimeout bounds one attempt to reach a server; retry repeats it.
const attemptTimeout = 10 * time.Second

// validName is what Name returns: safe unquoted in SQL and rabbitmqctl.
var validName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// CreateDatabase creates the empty database name and returns its URL and the
// function that drops it again.
func (s Servers) CreateDatabase(ctx context.Context, name string) (dbURL string, drop func(context.Context) error, err error) {
	if !validName.MatchString(name) {
		return "", nil, fmt.Errorf("database name %q: want lower-case letters, digits and _", name)
	}
	u, err := url.Parse(s.PostgresURL)
	if err != nil {
		return "", nil, fmt.Errorf("PostgreSQL URL: %w", err)
	}
	if err := s.adminSQL(ctx, "CREATE DATABASE "+name, "42P04"); err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop = func(ctx context.Context) error {
		return s.adminSQL(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)", "")
	}
	return u.String(), drop, nil
}

// adminSQL runs one statement on the admin database. doneCode is the SQLSTATE
// that, on a repeated attempt, means the first attempt went through.
func (s Servers) adminSQL(ctx context.Context, sql, doneCode string) error {
	what := "PostgreSQL at " + redactURL(s.PostgresURL) + " (TEST_POSTGRES_URL)"
	return s.retry(ctx, what, func(ctx context.Context, attempt int) error {
		ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.PostgresURL)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		_, err = conn.Exec(ctx, sql)
		var pe *pgconn.PgError
		switch {
		case err == nil:
			return nil
		case !errors.As(err, &pe):
			return err // the connection broke: try again
		case attempt > 1 && pe.Code == doneCode:
			return nil
		case transientSQLState(pe.Code):
			return err
		}
		return backoff.Permanent(fmt.Errorf("%s: %w", sql, err))
	})
}

// transientSQLState reports the errors of a server that is starting, shutting
// down or busy: 53 (insufficient resources), 57 (operator intervention),
// 55006 (the template database is in use), 40001 and 40P01.
func transientSQLState(code string) bool {
	class := code[:min(2, len(code))]
	return class == "53" || class == "57" || code == "55006" || code == "40001" || code == "40P01"
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Database creates an empty database and returns its URL; it is dropped at
// cleanup. The test fails if PostgreSQL does not answer.
func Database(t testing.TB) string {
	t.Helper()
	s := servers(t)
	ctx, cancel := context.WithTimeout(context.Background(), s.cleanupLimit())
	defer cancel()
	dbURL, drop, err := s.CreateDatabase(ctx, Name("oo_test"))
	if err != nil {
		t.Fatalf("create a database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cleanupLimit())
		defer cancel()
		if err := drop(ctx); err != nil {
			t.Errorf("drop the test database: %v", err)
		}
	})
	return dbURL
}
