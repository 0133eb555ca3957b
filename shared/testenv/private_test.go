package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// A private Redis server comes back from a restart on its port, empty.
func TestPrivateRedisRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := PrivateRedis(t)
	client := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer client.Close()
	if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := client.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("GET k after the restart: %v, want redis.Nil (nothing kept)", err)
	}
}

// A private PostgreSQL cluster comes back from a restart on its port with
// what was committed.
func TestPrivatePostgresRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := PrivatePostgres(t)
	exec := func(sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)`)
	if err := c.Restart(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM kept`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after the restart: %d, %v; want 1", n, err)
	}
}
