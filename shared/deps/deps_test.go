package deps

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/shared/config"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// deadAddr is a loopback host:port that nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// configAccepts fails the test if the processes would refuse env at start.
func configAccepts(t *testing.T, env map[string]string) {
	t.Helper()
	if _, err := config.Load(func(k string) string { return env[k] }, "127.0.0.1:9100"); err != nil {
		t.Errorf("config refuses %v: %v", env, err)
	}
}

// TestOpenDBTakesAHostList: a DATABASE_URL naming a dead host, then the live
// one, with target_session_attrs=read-write, the form that follows a
// PostgreSQL primary across a failover. The pool connects to the live host and
// migrates there; the configuration check accepts the URL.
func TestOpenDBTakesAHostList(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(testenv.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Host = deadAddr(t) + "," + u.Host
	q := u.Query()
	q.Set("target_session_attrs", "read-write")
	u.RawQuery = q.Encode()
	configAccepts(t, map[string]string{"DATABASE_URL": u.String()})
	ctx := context.Background()
	db, err := OpenDB(ctx, u.String(), 2, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("OpenDB(%s): %v", config.Mask(u.String()), err)
	}
	defer db.Close()
	var readOnly string
	if err := db.QueryRow(ctx, "SHOW transaction_read_only").Scan(&readOnly); err != nil || readOnly != "off" {
		t.Errorf("transaction_read_only = %q, %v; want a writable session", readOnly, err)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM partners").Scan(&n); err != nil {
		t.Errorf("the migrations did not run on the live host: %v", err)
	}
}

// redisProc runs a redis-server of its own (args as on its command line) on a
// free loopback port until the test ends.
func redisProc(t *testing.T, dir string, conf string, args ...string) string {
	t.Helper()
	addr := deadAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	path := filepath.Join(dir, "redis-"+port+".conf")
	conf = fmt.Sprintf("port %s\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir %s\n%s", port, dir, conf)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", append([]string{path}, args...)...)
	out, err := os.Create(path + ".log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (needs the redis-server package): %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		out.Close()
	})
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for i := 0; c.Ping(context.Background()).Err() != nil; i++ {
		if i == 100 {
			t.Fatalf("redis-server on %s does not answer:\n%s", addr, tail(path+".log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	for s := bufio.NewScanner(f); s.Scan(); {
		lines = append(lines, s.Text())
	}
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// masterOf asks a Sentinel where it sees the master.
func masterOf(ctx context.Context, sentinel *redis.SentinelClient) string {
	a, err := sentinel.GetMasterAddrByName(ctx, "oneoffice").Result()
	if err != nil || len(a) != 2 {
		return ""
	}
	return net.JoinHostPort(a[0], a[1])
}

// TestOpenRedisFollowsSentinel: REDIS_URL names a dead Sentinel and a live one
// (redis-server --sentinel) watching a master of its own with one replica.
// The client writes to the master, and after the Sentinel fails it over, to
// the replica it promoted.
func TestOpenRedisFollowsSentinel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	master := redisProc(t, dir, "")
	mhost, mport, _ := net.SplitHostPort(master)
	replica := redisProc(t, dir, fmt.Sprintf("replicaof %s %s\n", mhost, mport))
	sentinelAddr := redisProc(t, dir, fmt.Sprintf("sentinel monitor oneoffice %s %s 1\n"+
		"sentinel down-after-milliseconds oneoffice 1000\nsentinel failover-timeout oneoffice 2000\n", mhost, mport), "--sentinel")
	ctx := context.Background()
	sentinel := redis.NewSentinelClient(&redis.Options{Addr: sentinelAddr})
	defer sentinel.Close()
	// The Sentinel must see the replica before it can fail over to it.
	for i := 0; ; i++ {
		replicas, err := sentinel.Replicas(ctx, "oneoffice").Result()
		if err == nil && len(replicas) == 1 {
			break
		}
		if i == 300 {
			t.Fatalf("the Sentinel does not see the replica: %v %v", replicas, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	raw := fmt.Sprintf("redis://%s/3?master_name=oneoffice&addr=%s", deadAddr(t), sentinelAddr)
	configAccepts(t, map[string]string{"REDIS_URL": raw})
	rdb, err := OpenRedis(raw, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatalf("write through the Sentinel: %v", err)
	}
	direct := redis.NewClient(&redis.Options{Addr: master, DB: 3})
	defer direct.Close()
	if got, err := direct.Get(ctx, "k").Result(); got != "before" {
		t.Fatalf("the master holds %q, %v: the client did not write to it", got, err)
	}

	// The Sentinel refuses (NOGOODSLAVE) until its view of the replica is fresh.
	for i := 0; ; i++ {
		err := sentinel.Failover(ctx, "oneoffice").Err()
		if err == nil {
			break
		}
		if i == 300 || !strings.Contains(err.Error(), "NOGOODSLAVE") {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; masterOf(ctx, sentinel) != replica; i++ {
		if i == 300 {
			t.Fatalf("the Sentinel did not promote the replica %s (master now %s)", replica, masterOf(ctx, sentinel))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Until the old master has been turned into a replica it still takes
	// writes, which its resync then drops: wait for that, as a partner's
	// retry would come after it.
	for i := 0; ; i++ {
		role, err := direct.Do(ctx, "ROLE").Slice()
		if err == nil && len(role) > 0 && role[0] == "slave" {
			break
		}
		if i == 300 {
			t.Fatalf("the old master was not turned into a replica: %v %v", role, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The client learns of the switch from the Sentinel; a write may meet the
	// demoted master (now read-only) until it has.
	var werr error
	for i := 0; i < 100; i++ {
		if werr = rdb.Set(ctx, "k", "after", 0).Err(); werr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if werr != nil {
		t.Fatalf("no write after the failover: %v", werr)
	}
	promoted := redis.NewClient(&redis.Options{Addr: replica, DB: 3})
	defer promoted.Close()
	if got, err := promoted.Get(ctx, "k").Result(); got != "after" {
		t.Errorf("the promoted replica holds %q, %v: the client did not follow the failover", got, err)
	}
}

func TestOpenRedisRefusesAnEmptyMasterName(t *testing.T) {
	t.Parallel()
	if _, err := OpenRedis("redis://127.0.0.1:26379/0?master_name=", 0); err == nil {
		t.Error("an empty master_name was accepted")
	}
}
