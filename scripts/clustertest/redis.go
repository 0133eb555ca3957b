package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis DBs are claimed the way the tests, the bench and the load scripts
// claim theirs (shared/testenv, scripts/lib/redisdb.sh), so that none of them
// shares a DB with this run: the key claimPrefix<n> in DB 0, taken with SET NX
// PX for the first free n from 1 to 15, renewed while the run lasts, deleted
// at the end.
const (
	claimPrefix  = "oneoffice:testenv:redis-db:"
	claimTTL     = 2 * time.Minute
	claimRefresh = 10 * time.Second
)

var (
	renewScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0`)
	unclaimScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

// claimRedis claims and flushes a free Redis DB; td flushes and releases it.
func claimRedis(ctx context.Context, addr, owner string, td *teardown) (int, error) {
	claims := redis.NewClient(&redis.Options{Addr: addr, DB: 0})
	owner = fmt.Sprintf("%s pid %d %d", owner, os.Getpid(), time.Now().UnixNano())
	for n := 1; n <= 15; n++ {
		key := fmt.Sprint(claimPrefix, n)
		ok, err := claims.SetNX(ctx, key, owner, claimTTL).Result()
		if err != nil {
			claims.Close()
			return 0, fmt.Errorf("Redis at %s: %w", addr, err)
		}
		if !ok {
			continue
		}
		db := redis.NewClient(&redis.Options{Addr: addr, DB: n})
		renew, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(claimRefresh)
			defer t.Stop()
			for {
				select {
				case <-renew.Done():
					return
				case <-t.C:
					renewScript.Run(renew, claims, []string{key}, owner, claimTTL.Milliseconds())
				}
			}
		}()
		td.add(fmt.Sprintf("release Redis DB %d", n), func(ctx context.Context) error {
			stop()
			<-done
			defer claims.Close()
			defer db.Close()
			return errors.Join(db.FlushDB(ctx).Err(),
				unclaimScript.Run(ctx, claims, []string{key}, owner).Err())
		})
		return n, db.FlushDB(ctx).Err()
	}
	claims.Close()
	return 0, errors.New("every Redis DB from 1 to 15 is claimed")
}
