# Claims a Redis DB for a script's own stack the way shared/testenv claims
# one for each test and the bench, so that tests, bench and scripts running
# at the same time never share a DB: the key oneoffice:testenv:redis-db:<n>
# in DB 0, taken with SET NX PX for the first free n from 1 to 12, renewed in
# the background while the script runs and deleted at release. The DB is
# flushed when claimed and when released.
#
#   . scripts/lib/redisdb.sh
#   redisdb_claim "load.sh $tag" || die "no Redis DB"   # sets redisdb_n
#   ... REDIS_URL=redis://127.0.0.1:6379/$redisdb_n ...
#   redisdb_release                                     # in the EXIT trap
#
# A holder that dies without releasing loses its claim after redisdb_ttl_ms;
# the renewer stops within a second of the script's end, however it ended.

redisdb_prefix=oneoffice:testenv:redis-db:
redisdb_ttl_ms=120000
redisdb_n=
redisdb_owner=
redisdb_renewer=

# Renews the claim if this owner holds it, takes it back if Redis lost it
# (a restart), and answers 0 if another owner holds it: the script
# shared/testenv runs for the same purpose.
redisdb_renew_lua="if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0"
redisdb_unclaim_lua="if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0"

redisdb_cli() { timeout 10 redis-cli "$@"; }

# redisdb_claim OWNER: claims the first free DB from 1 to 12 for OWNER (a
# label, made unique here), flushes it and sets redisdb_n.
redisdb_claim() {
  local n
  [ "$(redisdb_cli -n 0 PING 2>/dev/null)" = PONG ] || { echo "redisdb: Redis does not answer" >&2; return 1; }
  redisdb_owner="$1 pid $$ $(date +%s)-$RANDOM$RANDOM"
  for n in $(seq 1 12); do
    if [ "$(redisdb_cli -n 0 SET "$redisdb_prefix$n" "$redisdb_owner" NX PX "$redisdb_ttl_ms")" = OK ]; then
      redisdb_n=$n
      redisdb_cli -n "$n" FLUSHDB >/dev/null || { redisdb_release; return 1; }
      redisdb_start_renewer
      return 0
    fi
  done
  echo "redisdb: every Redis DB from 1 to 12 is claimed:" >&2
  for n in $(seq 1 12); do echo "  $n: $(redisdb_cli -n 0 GET "$redisdb_prefix$n")" >&2; done
  return 1
}

# The renewer is started by a subshell that exits at once, so it is no child
# of the script: a plain `wait` there (stop_procs) does not wait for it.
redisdb_start_renewer() {
  redisdb_renewer=$( (redisdb_renew_loop </dev/null >/dev/null 2>&1 &
    echo $!) )
}

redisdb_renew_loop() {
  local parent=$$ i
  while :; do
    for i in 1 2 3 4 5 6 7 8 9 10; do
      sleep 1
      kill -0 "$parent" 2>/dev/null || exit 0
    done
    redisdb_cli -n 0 EVAL "$redisdb_renew_lua" 1 "$redisdb_prefix$redisdb_n" "$redisdb_owner" "$redisdb_ttl_ms"
  done
}

# redisdb_release: stops renewing, then flushes the DB and deletes the claim
# if this script still holds it. Safe to call twice.
redisdb_release() {
  [ -n "$redisdb_n" ] || return 0
  [ -n "$redisdb_renewer" ] && kill "$redisdb_renewer" 2>/dev/null
  redisdb_renewer=
  if [ "$(redisdb_cli -n 0 GET "$redisdb_prefix$redisdb_n")" = "$redisdb_owner" ]; then
    redisdb_cli -n "$redisdb_n" FLUSHDB >/dev/null
    redisdb_cli -n 0 EVAL "$redisdb_unclaim_lua" 1 "$redisdb_prefix$redisdb_n" "$redisdb_owner" >/dev/null
  else
    echo "redisdb: the claim of Redis DB $redisdb_n was taken over; left alone" >&2
  fi
  redisdb_n=
}
