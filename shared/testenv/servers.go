package testenv

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"
)

// Defaults of FromEnv.
const (
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	DefaultAMQPURL     = "amqp://guest:guest@127.0.0.1:5672/"
	DefaultRedisAddr   = "127.0.0.1:6379"
	// DefaultWait is how long a server that does not answer is waited for.
	DefaultWait = 45 * time.Second
)

// Servers are the shared servers that isolated stacks are carved from.
type Servers struct {
	// PostgresURL is a superuser's URL (TEST_POSTGRES_URL, default
	// DefaultPostgresURL): databases are created and dropped through it.
	PostgresURL string
	// AMQPURL is the broker's URL without vhost (TEST_AMQP_URL, default
	// DefaultAMQPURL); its user is given each new vhost. Vhosts themselves are
	// made with rabbitmqctl, which must be on PATH.
	AMQPURL string
	// RedisAddr is host:port of Redis (TEST_REDIS_ADDR, default
	// DefaultRedisAddr).
	RedisAddr string
	// Wait bounds the retries of a call to a server that does not answer
	// (TEST_SERVICE_WAIT, default DefaultWait).
	Wait time.Duration
	// Logf, when set, is told when a server is being waited for.
	Logf func(format string, args ...any)
}

// FromEnv returns the servers named by the TEST_* environment variables.
func FromEnv() (Servers, error) {
	s := Servers{
		PostgresURL: cmp.Or(os.Getenv("TEST_POSTGRES_URL"), DefaultPostgresURL),
		AMQPURL:     cmp.Or(os.Getenv("TEST_AMQP_URL"), DefaultAMQPURL),
		RedisAddr:   cmp.Or(os.Getenv("TEST_REDIS_ADDR"), DefaultRedisAddr),
		Wait:        DefaultWait,
	}
	if v := os.Getenv("TEST_SERVICE_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return s, fmt.Errorf("TEST_SERVICE_WAIT=%q: want a positive Go duration", v)
		}
		s.Wait = d
	}
	return s, nil
}

// servers is FromEnv for a test, which it fails on a bad setting and tells
// what it waits for.
func servers(t testing.TB) Servers {
	t.Helper()
	s, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	s.Logf = t.Logf
	return s
}

// cleanupLimit bounds one undo step registered by a testing.TB wrapper: the
// retries of an unanswered server and the work itself.
func (s Servers) cleanupLimit() time.Duration { return s.wait() + 30*time.Second }

func (s Servers) wait() time.Duration { return cmp.Or(s.Wait, DefaultWait) }

func (s Servers) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Name returns a unique lower-case name with prefix, usable unquoted as a
// database, vhost or queue name.
func Name(prefix string) string {
	var b [5]byte
	rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}
