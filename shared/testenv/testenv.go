// Package testenv gives tests their own isolated piece of the real services on
// loopback: a fresh PostgreSQL database, a RabbitMQ vhost and a Redis DB, found
// through TEST_POSTGRES_URL, TEST_AMQP_URL and TEST_REDIS_ADDR (localhost
// defaults) and removed when the test ends. A missing service fails the test:
// it never skips.
package testenv

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Admin endpoints of the shared servers.
var (
	postgresURL = cmp.Or(os.Getenv("TEST_POSTGRES_URL"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	amqpBase    = cmp.Or(os.Getenv("TEST_AMQP_URL"), "amqp://guest:guest@127.0.0.1:5672/")
	redisAddr   = cmp.Or(os.Getenv("TEST_REDIS_ADDR"), "127.0.0.1:6379")
)

// Name returns a unique lower-case name with prefix.
func Name(prefix string) string {
	var b [5]byte
	rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

// Database creates an empty database and returns its URL; it is dropped at cleanup.
func Database(t testing.TB) string {
	t.Helper()
	name := Name("oo_test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, postgresURL)
	if err != nil {
		t.Fatalf("PostgreSQL is required (TEST_POSTGRES_URL=%s): %v", postgresURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, postgresURL); err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	u, _ := url.Parse(postgresURL)
	u.Path = "/" + name
	return u.String()
}

// Vhost creates a RabbitMQ vhost for guest and returns its AMQP URL; it is
// deleted at cleanup.
func Vhost(t testing.TB) string {
	t.Helper()
	name := Name("oo_test")
	if out, err := exec.Command("rabbitmqctl", "add_vhost", name).CombinedOutput(); err != nil {
		t.Fatalf("RabbitMQ is required (rabbitmqctl add_vhost): %v: %s", err, out)
	}
	if out, err := exec.Command("rabbitmqctl", "set_permissions", "-p", name, "guest", ".*", ".*", ".*").CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl set_permissions: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("rabbitmqctl", "delete_vhost", name).Run() })
	return strings.TrimSuffix(amqpBase, "/") + "/" + name
}

// Redis returns the URL of Redis DB db, flushed now and at cleanup. Tests that
// run at the same time must use different DB numbers.
func Redis(t testing.TB, db int) string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, DB: db})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("Redis is required (TEST_REDIS_ADDR=%s): %v", redisAddr, err)
	}
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: redisAddr, DB: db})
		c.FlushDB(context.Background())
		c.Close()
	})
	return fmt.Sprintf("redis://%s/%d", redisAddr, db)
}

// RedisAddr is the shared Redis server's address.
func RedisAddr() string { return redisAddr }

// FreeAddr returns a loopback address with a free port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
