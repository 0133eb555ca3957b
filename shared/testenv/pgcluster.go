package testenv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Settings of a private PostgreSQL cluster, from the environment with the
// defaults of a Debian or Ubuntu package install.
const (
	// PostgresBinEnv names the directory holding initdb and pg_ctl.
	PostgresBinEnv     = "TEST_POSTGRES_BIN"
	defaultPostgresBin = "/usr/lib/postgresql/15/bin"
	// PostgresUserEnv names the user the cluster runs as when this program
	// is root, which PostgreSQL refuses to be.
	PostgresUserEnv     = "TEST_POSTGRES_USER"
	defaultPostgresUser = "postgres"
)

// PostgresCluster is a PostgreSQL cluster of one test or program, beside the
// shared server: its own data directory and port on loopback, superuser
// postgres without password. It may be restarted, which the shared server
// never is.
type PostgresCluster struct {
	// URL is the superuser's URL of the postgres database
	// (Servers.PostgresURL).
	URL  string
	Port int

	dir  string
	user *user.User // nil when not root
}

// StartPostgresCluster makes a cluster with initdb in a new directory under
// os.TempDir, starts it and waits until it accepts connections. On error
// nothing is left running or on disk.
func StartPostgresCluster(ctx context.Context) (*PostgresCluster, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "oo-postgres")
	if err != nil {
		return nil, err
	}
	c := &PostgresCluster{Port: ports[0], dir: dir,
		URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", ports[0])}
	if err := c.init(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := c.pgctl(ctx, "start"); err != nil {
		return nil, errors.Join(err, c.Stop(context.WithoutCancel(ctx)))
	}
	return c, c.await(ctx)
}

// init runs initdb, as the postgres user when this program is root.
func (c *PostgresCluster) init(ctx context.Context) error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup(cmp.Or(os.Getenv(PostgresUserEnv), defaultPostgresUser))
		if err != nil {
			return fmt.Errorf("PostgreSQL user (%s): %w", PostgresUserEnv, err)
		}
		c.user = u
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return err
		}
	}
	_, err := c.run(ctx, "initdb", "-D", c.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	return err
}

func (c *PostgresCluster) data() string { return filepath.Join(c.dir, "data") }

// pgctl runs pg_ctl action (start, restart, stop) and waits for it.
func (c *PostgresCluster) pgctl(ctx context.Context, action string, args ...string) error {
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=off -c max_connections=200", c.Port, c.dir)
	_, err := c.run(ctx, "pg_ctl", append([]string{"-D", c.data(), "-l", filepath.Join(c.dir, "log"),
		"-o", opts, "-w", "-t", "60", action}, args...)...)
	return err
}

func (c *PostgresCluster) run(ctx context.Context, bin string, args ...string) (string, error) {
	path := filepath.Join(cmp.Or(os.Getenv(PostgresBinEnv), defaultPostgresBin), bin)
	cmd := exec.CommandContext(ctx, path, args...)
	if c.user != nil {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.user.Username, "--", path}, args...)...)
	}
	cmd.Dir = c.dir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return "", fmt.Errorf("%s %s: %w: %s\n%s", bin, strings.Join(args, " "), err, out, log)
	}
	return string(out), nil
}

// await waits until the cluster accepts a connection.
func (c *PostgresCluster) await(ctx context.Context) error {
	return retryFor(ctx, serverBootLimit, 100*time.Millisecond, nil, fmt.Sprintf("PostgreSQL cluster on port %d", c.Port),
		func(ctx context.Context, _ int) error {
			conn, err := pgx.Connect(ctx, c.URL)
			if err == nil {
				return conn.Close(ctx)
			}
			return err
		})
}

// Restart stops the cluster with a fast shutdown (its sessions are ended,
// open transactions rolled back), leaves it down for down, and starts it
// again on the same port.
func (c *PostgresCluster) Restart(ctx context.Context, down time.Duration) error {
	if err := c.pgctl(ctx, "stop", "-m", "fast"); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	if err := c.pgctl(ctx, "start"); err != nil {
		return err
	}
	return c.await(ctx)
}

// Stop ends the cluster (immediate shutdown) and removes its directory. It
// is safe to call twice.
func (c *PostgresCluster) Stop(ctx context.Context) error {
	var err error
	if _, serr := os.Stat(filepath.Join(c.data(), "postmaster.pid")); serr == nil {
		err = c.pgctl(ctx, "stop", "-m", "immediate")
	}
	return errors.Join(err, os.RemoveAll(c.dir))
}

// PrivatePostgres starts a PostgreSQL cluster for the test, stopped and
// removed at cleanup; the test fails if it does not start.
func PrivatePostgres(t testing.TB) *PostgresCluster {
	t.Helper()
	return private(t, "PostgreSQL cluster", 2*serverBootLimit, StartPostgresCluster)
}
