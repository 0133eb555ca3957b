#!/usr/bin/env bash
# Runs a k6 script against an isolated OneOffice stack and tears the stack down.
#
#   scripts/load.sh [SCRIPT [K6 RUN ARGS...]]      SCRIPT defaults to scripts/k6/load.js
#   RATE=300 DURATION=30s scripts/load.sh scripts/k6/load.js
#   scripts/load.sh scripts/k6/smoke.js            (CI: well under a minute)
#   scripts/load.sh scripts/k6/idempotency.js
#   PEAK=600 scripts/load.sh scripts/k6/spike.js
#   DURATION=2h RATE=20 scripts/load.sh scripts/k6/soak.js
#
# What it does, from the project root:
#   1. builds k6 into bin/ if missing (go install go.k6.io/k6@v1.8.1) and `make build`;
#   2. creates its own PostgreSQL database and RabbitMQ vhost (both named load<PID>),
#      claims a free Redis DB the way the tests do (scripts/lib/redisdb.sh; flushed
#      before and after) and uses free loopback ports; runs `bin/gateway migrate` and
#      `bin/gateway keys create --partner "Load <tag>"`;
#   3. starts one gateway and two workers (logs in var/load/<tag>/, kept when k6 fails);
#   4. runs `bin/k6 run [K6 RUN ARGS] SCRIPT` with BASE_URL, API_KEY and
#      RENEWAL_WINDOW_DAYS exported (k6 reads the environment, so RATE, DURATION,
#      PEAK, VUS, ... given to this script reach the k6 script as __ENV), and prints
#      k6's end-of-test summary;
#   5. stops the processes, drops the database and the vhost, flushes and releases the
#      Redis DB (a trap does it on any exit) and exits with k6's exit code (99 = thresholds
#      crossed). Exit 1 (before k6 ran) means the stack could not be brought up.
#
# Stack settings (environment, with these defaults):
#   RENEWAL_WINDOW_DAYS=400  the workers' renewal window: a yearly order created now
#                            (~365 days left) can be renewed once, then the next
#                            renewal is refused (~730 days left), so the scripts see
#                            both accepted and refused (422 renewal_too_early) renewals
#   WORKER_CONCURRENCY=32  WORKER_PREFETCH=64  DATABASE_MAX_CONNS=10 (the service's
#                            defaults: a stack holds at most 24 PostgreSQL connections)
#   RPC_TIMEOUT=4s  RATE_LIMIT_RPS=0 (off)  LOG_LEVEL=info
#   K6=bin/k6                the k6 binary
#   KEEP_LOGS=1              keep var/load/<tag>/ (process logs) after a passing run too
#   K6_PROGRESS=1            k6's progress lines even when stdout is not a terminal
#   WEBHOOKS=1               the partner gets a webhook endpoint: scripts/webhookrecv on a
#                            free port (verifying every signature), set with
#                            `bin/gateway webhooks set`; after k6 the run waits up to 60s for
#                            the outbox to drain and prints the delivery latency
#                            (p50/p99/max, from each event's occurred_at to its delivered_at)
#                            and what the receiver got; a lost, unsigned or extra event fails
#                            the run (exit 3)
# Needs PostgreSQL, Redis and RabbitMQ on loopback (`make services`), the postgres
# superuser without password, guest/guest on RabbitMQ, psql, redis-cli, rabbitmqctl.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/procs.sh
. scripts/lib/godebug.sh
. scripts/lib/redisdb.sh
proj=$PWD

script=${1:-scripts/k6/load.js}
[ $# -gt 0 ] && shift
[ -f "$script" ] || { echo "load.sh: no such k6 script: $script" >&2; exit 2; }

K6=${K6:-bin/k6}
tag=load$$
work=$proj/var/load/$tag
pids=()
k6rc=1
k6pid=
keep_logs=${KEEP_LOGS:-0}

log() { printf 'load.sh: %s\n' "$*" >&2; }
die() { log "$*"; keep_logs=1; exit 1; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$k6pid" ] && kill -0 "$k6pid" 2>/dev/null; then # interrupted: k6 first
    kill -TERM "$k6pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$k6pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$k6pid" 2>/dev/null
  fi
  stop_procs 50 "${pids[@]}"
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $tag WITH (FORCE)" >/dev/null 2>&1 ||
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $tag" >/dev/null 2>&1
  rabbitmqctl delete_vhost "$tag" >/dev/null 2>&1
  redisdb_release
  if [ "$keep_logs" = 1 ] || [ "$rc" != 0 ]; then
    [ -d "$work" ] && log "logs kept in $work"
    rm -rf "$work/tenants"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
taken=" "
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 10000))
    case "$taken" in *" $p "*) continue ;; esac
    if port_free "$p"; then taken="$taken$p "; echo "$p"; return 0; fi
  done
  return 1
}

wait_ready() { # URL SECONDS
  local deadline=$((SECONDS + $2))
  until curl -fs -o /dev/null "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

for t in psql redis-cli rabbitmqctl curl; do
  command -v "$t" >/dev/null || die "$t not found (make services installs the servers and their clients)"
done
pg_isready -q -h 127.0.0.1 2>/dev/null || psql -h 127.0.0.1 -U postgres -qtAc 'SELECT 1' >/dev/null 2>&1 ||
  die "PostgreSQL does not answer on 127.0.0.1:5432 (run: make services)"
redis-cli ping >/dev/null 2>&1 || die "Redis does not answer on 127.0.0.1:6379 (run: make services)"

if [ ! -x "$K6" ]; then
  log "building k6 v1.8.1 into bin/ (once)"
  GOBIN=$proj/bin go install go.k6.io/k6@v1.8.1 || die "go install go.k6.io/k6@v1.8.1 failed"
  K6=bin/k6
fi

mkdir -p "$work"
make build >"$work/build.log" 2>&1 || { tail -20 "$work/build.log" >&2; die "make build failed"; }

psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $tag" >/dev/null || die "cannot create database $tag"
rabbitmqctl add_vhost "$tag" >/dev/null 2>&1 && rabbitmqctl set_permissions -p "$tag" guest '.*' '.*' '.*' >/dev/null 2>&1 ||
  die "cannot create RabbitMQ vhost $tag"
redisdb_claim "load.sh $tag" || die "cannot claim a Redis DB"
redis_db=$redisdb_n

export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$tag?sslmode=disable"
export REDIS_URL="redis://127.0.0.1:6379/$redis_db"
export AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$tag"
export RENEWAL_WINDOW_DAYS=${RENEWAL_WINDOW_DAYS:-400}
export WORKER_CONCURRENCY=${WORKER_CONCURRENCY:-32}
export WORKER_PREFETCH=${WORKER_PREFETCH:-64}
export RPC_TIMEOUT=${RPC_TIMEOUT:-4s}
export RATE_LIMIT_RPS=${RATE_LIMIT_RPS:-0}
export LOG_LEVEL=${LOG_LEVEL:-info}
export STORAGE_ROOT=$work/tenants
api_port=$(free_port) && gw_port=$(free_port) && w1_port=$(free_port) && w2_port=$(free_port) || die "no free port"
webhooks=${WEBHOOKS:-0}
if [ "$webhooks" = 1 ]; then
  hook_port=$(free_port) || die "no free port"
  export WEBHOOK_SECRET_KEY=${WEBHOOK_SECRET_KEY:-$(head -c 32 /dev/urandom | base64)}
  export WEBHOOK_ALLOW_HOSTS=127.0.0.1
fi
export HTTP_ADDR=127.0.0.1:$api_port

bin/gateway migrate >"$work/migrate.log" 2>&1 || { tail -5 "$work/migrate.log" >&2; die "bin/gateway migrate failed"; }
key=$(bin/gateway keys create --partner "Load $tag" 2>"$work/keys.log") && [ -n "$key" ] ||
  { cat "$work/keys.log" >&2; die "bin/gateway keys create failed"; }

if [ "$webhooks" = 1 ]; then
  go build -o "$work/" ./scripts/webhookrecv >>"$work/build.log" 2>&1 || die "go build ./scripts/webhookrecv failed"
  "$work/webhookrecv" -addr "127.0.0.1:$hook_port" -secret-file "$work/whsec" >"$work/webhookrecv.log" 2>&1 &
  hook_pid=$!; pids+=("$hook_pid")
  (umask 077; bin/gateway webhooks set --partner "Load $tag" --url "http://127.0.0.1:$hook_port/hooks" \
    >"$work/whsec" 2>>"$work/keys.log") || { cat "$work/keys.log" >&2; die "bin/gateway webhooks set failed"; }
fi

METRICS_ADDR=127.0.0.1:$gw_port bin/gateway >"$work/gateway.log" 2>&1 & pids+=($!)
METRICS_ADDR=127.0.0.1:$w1_port bin/worker >"$work/worker1.log" 2>&1 & pids+=($!)
METRICS_ADDR=127.0.0.1:$w2_port bin/worker >"$work/worker2.log" 2>&1 & pids+=($!)
for p in "$gw_port" "$w1_port" "$w2_port"; do
  wait_ready "http://127.0.0.1:$p/readyz" 30 || die "a process on metrics port $p is not ready after 30s (see $work)"
done
log "stack $tag up: API http://$HTTP_ADDR/ (gateway metrics :$gw_port, workers :$w1_port :$w2_port)," \
  "Redis DB $redis_db, RENEWAL_WINDOW_DAYS=$RENEWAL_WINDOW_DAYS, WORKER_CONCURRENCY=$WORKER_CONCURRENCY"

export BASE_URL="http://$HTTP_ADDR"
export API_KEY=$key
# k6 prints a progress line a second when stdout is not a terminal (CI logs):
# quiet then, unless K6_PROGRESS=1. The end-of-test summary is printed either way.
quiet=()
[ -t 1 ] || [ "${K6_PROGRESS:-0}" = 1 ] || quiet=(--quiet)
# In the background, so that a signal to this script runs the trap at once.
"$K6" run "${quiet[@]}" "$@" "$script" </dev/null &
k6pid=$!
wait "$k6pid"
k6rc=$?
k6pid=
for p in "${pids[@]}"; do
  kill -0 "$p" 2>/dev/null || { log "a stack process died during the run (see $work)"; keep_logs=1; }
done
[ "$k6rc" = 0 ] || keep_logs=1

# The webhook events of the run: all delivered, each once, every signature good.
if [ "$webhooks" = 1 ]; then
  sql() { psql "$DATABASE_URL" -qtAc "$1"; }
  for _ in $(seq 1 600); do
    [ "$(sql "SELECT count(*) FROM webhook_events WHERE status = 'pending'")" = 0 ] && break
    sleep 0.1
  done
  kill -TERM "$hook_pid" 2>/dev/null; wait "$hook_pid"
  got=$(tail -1 "$work/webhookrecv.log")
  stats=$(sql "SELECT count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status <> 'delivered'),
      (SELECT count(*) FROM command_ledger),
      round(1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY delivered_at - occurred_at)))::int,
      round(1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY delivered_at - occurred_at)))::int,
      round(1000 * extract(epoch FROM max(delivered_at - occurred_at)))::int
    FROM webhook_events")
  IFS='|' read -r delivered undelivered ledger p50 p99 maxms <<<"$stats"
  log "webhooks: $delivered events delivered, $undelivered not, for $ledger ledger rows;" \
    "delivery latency p50 ${p50} ms, p99 ${p99} ms, max ${maxms} ms; $got"
  want="requests=$delivered distinct_ids=$delivered repeats=0 bad_signatures=0"
  if [ "$undelivered" != 0 ] || [ "$delivered" != "$ledger" ] || [ "${got#webhookrecv: }" != "$want" ]; then
    log "webhooks: want every ledger row's event delivered once, signed ($want)"
    keep_logs=1
    [ "$k6rc" = 0 ] && k6rc=3
  fi
fi
exit "$k6rc"
