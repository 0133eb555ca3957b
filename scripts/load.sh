#!/usr/bin/env bash
# Runs a k6 script against an isolated OneOffice stack and tears the stack down.
#
#   scripts/load.sh [SCRIPT [K6 RUN ARGS...]]      SCRIPT defaults to scripts/k6/load.js
#   RATE=300 DURATION=30s scripts/load.sh scripts/k6/load.js
#   scripts/load.sh scripts/k6/smoke.js            (CI: well under a minute)
#   scripts/load.sh scripts/k6/idempotency.js
#   PROFILE=spike PEAK=600 scripts/load.sh scripts/k6/load.js
#   PROFILE=soak DURATION=2h RATE=20 scripts/load.sh scripts/k6/load.js
#
# What it does, from the project root:
#   1. builds k6 into bin/ if missing (go install go.k6.io/k6@v1.8.1);
#   2. brings up an isolated stack with `lab stack` (scripts/lab): its own database,
#      vhost and claimed Redis DB, free loopback ports, the partner "load" and its key,
#      one gateway and two workers built from this tree;
#   3. runs `bin/k6 run [K6 RUN ARGS] SCRIPT` with BASE_URL, API_KEY and
#      RENEWAL_WINDOW_DAYS exported (k6 reads the environment, so RATE, DURATION,
#      PEAK, VUS, ... given to this script reach the k6 script as __ENV), and prints
#      k6's end-of-test summary;
#   4. stops the stack, which removes everything it made (a trap does it on any exit),
#      and exits with k6's exit code (99 = thresholds crossed). Exit 1 (before k6 ran)
#      means the stack could not be brought up.
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
#   KEEP_LOGS=1              keep the stack's process logs (always kept when a process died)
#   K6_PROGRESS=1            k6's progress lines even when stdout is not a terminal
#   WEBHOOKS=1               the partner gets a webhook endpoint (`lab stack -webhooks`: a
#                            receiver verifying every signature); after k6 the run waits up
#                            to 60s for the outbox to drain and prints the delivery latency
#                            (p50/p99/max, from each event's occurred_at to its delivered_at)
#                            and what the receiver got; a lost, unsigned or extra event fails
#                            the run (exit 3)
# Needs PostgreSQL, Redis and RabbitMQ on loopback (`make services`), the postgres
# superuser without password, guest/guest on RabbitMQ, rabbitmqctl.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/godebug.sh
. scripts/lib/stack.sh

script=${1:-scripts/k6/load.js}
[ $# -gt 0 ] && shift
[ -f "$script" ] || { echo "load.sh: no such k6 script: $script" >&2; exit 2; }
K6=${K6:-bin/k6}
k6pid=

log() { printf 'load.sh: %s\n' "$*" >&2; }
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$k6pid" ]; then stop_procs 50 "$k6pid"; fi # interrupted: k6 first
  stack_down; [ "$rc" = 0 ] && rc=$stack_rc
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ ! -x "$K6" ]; then
  log "building k6 v1.8.1 into bin/ (once)"
  GOBIN=$PWD/bin go install go.k6.io/k6@v1.8.1 || { log "go install go.k6.io/k6@v1.8.1 failed"; exit 1; }
  K6=bin/k6
fi

export RENEWAL_WINDOW_DAYS=${RENEWAL_WINDOW_DAYS:-400}
export WORKER_CONCURRENCY=${WORKER_CONCURRENCY:-32} WORKER_PREFETCH=${WORKER_PREFETCH:-64}
export RPC_TIMEOUT=${RPC_TIMEOUT:-4s} RATE_LIMIT_RPS=${RATE_LIMIT_RPS:-0} LOG_LEVEL=${LOG_LEVEL:-info}
args=(-name load -workers 2)
[ "${KEEP_LOGS:-0}" = 1 ] && args+=(-keep)
[ "${WEBHOOKS:-0}" = 1 ] && args+=(-webhooks)
stack_up "${args[@]}" || exit 1
export BASE_URL API_KEY

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
stack_down
[ "$k6rc" = 0 ] && k6rc=$stack_rc
exit "$k6rc"
