package testenv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/redis/go-redis/v9"
)

// RedisServerEnv names the redis-server binary of a private server; default
// redis-server on PATH.
const RedisServerEnv = "TEST_REDIS_SERVER"

// serverBootLimit bounds the start of a private Redis or PostgreSQL server.
const serverBootLimit = time.Minute

// RedisServer is a redis-server of one test or program, beside the shared
// one: its own port and directory, nothing saved to disk, so a restart
// brings it back empty. It may be flushed, stopped and restarted, which the
// shared server never is.
type RedisServer struct {
	Addr string // 127.0.0.1:port

	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// StartRedisServer starts a server on a free port in a new directory under
// os.TempDir and waits until it answers PING. On error nothing is left.
func StartRedisServer(ctx context.Context) (*RedisServer, error) {
	addr, err := PickAddr()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "oo-redis")
	if err != nil {
		return nil, err
	}
	r := &RedisServer{Addr: addr, dir: dir}
	if err := r.start(ctx); err != nil {
		return nil, errors.Join(err, r.Stop(context.WithoutCancel(ctx)))
	}
	return r, nil
}

// URL is the server's URL for DB db.
func (r *RedisServer) URL(db int) string { return fmt.Sprintf("redis://%s/%d", r.Addr, db) }

func (r *RedisServer) start(ctx context.Context) error {
	_, port, _ := net.SplitHostPort(r.Addr)
	r.cmd = exec.Command(cmp.Or(os.Getenv(RedisServerEnv), "redis-server"),
		"--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", r.dir,
		"--logfile", filepath.Join(r.dir, "redis.log"))
	// Its own process group, and killed with this program if it dies.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.done = make(chan struct{})
	go func() {
		r.cmd.Wait()
		close(r.done)
	}()
	client := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer client.Close()
	return retryFor(ctx, serverBootLimit, 50*time.Millisecond, nil, "redis-server on "+r.Addr, func(ctx context.Context, _ int) error {
		if r.exited() {
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			return backoff.Permanent(fmt.Errorf("exited at start: %v\n%s", r.cmd.ProcessState, log))
		}
		return client.Ping(ctx).Err()
	})
}

// Restart stops the server (SIGTERM; its clients lose their connections
// and everything it held), leaves it down for down, and starts it again,
// empty, on the same port.
func (r *RedisServer) Restart(ctx context.Context, down time.Duration) error {
	r.halt()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	return r.start(ctx)
}

// halt sends SIGTERM and waits for the exit, killing after 10 seconds.
func (r *RedisServer) halt() {
	if r.exited() {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
}

// Stop ends the server and removes its directory. It is safe to call twice.
func (r *RedisServer) Stop(context.Context) error {
	r.halt()
	return os.RemoveAll(r.dir)
}

func (r *RedisServer) exited() bool { return closed(r.done) }

// PrivateRedis starts a redis-server for the test, stopped and removed at
// cleanup; the test fails if it does not start.
func PrivateRedis(t testing.TB) *RedisServer {
	t.Helper()
	return private(t, "Redis server", serverBootLimit+10*time.Second, StartRedisServer)
}
