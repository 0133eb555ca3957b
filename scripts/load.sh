#!/usr/bin/env bash
# Runs a k6 script against an isolated OneOffice stack and tears the stack down.
#
#   scripts/load.sh [SCRIPT [K6 RUN ARGS...]]      SCRIPT defaults to scripts/k6/load.js
#   RATE=300 DURATION=30s scripts/load.sh scripts/k6/load.js
#   scripts/load.sh scripts/k6/smoke.js            (CI: well under a minute)
#   PROFILE=spike PEAK=600 scripts/load.sh scripts/k6/load.js
#   PROFILE=soak DURATION=2h RATE=20 scripts/load.sh scripts/k6/load.js
#
# It builds k6 into bin/ if missing (go install go.k6.io/k6@v1.8.1), then runs
# `k6 run [K6 RUN ARGS] SCRIPT` under `lab stack` (scripts/lab/stack): an isolated
# stack (own database, vhost and Redis DB, free loopback ports, the partner "load"
# and its key, one gateway and two workers built from this tree) whose BASE_URL,
# API_KEY, ... reach k6 with this script's environment (RATE, DURATION, PEAK, VUS,
# ...: k6's __ENV). It exits with k6's status (99 = thresholds crossed); 1 before
# k6 ran means the stack could not be brought up.
#
# Settings (environment, with these defaults): RENEWAL_WINDOW_DAYS=400 (the workers'
# window, exported to k6 too: a yearly order renews once, then is refused, so the
# scripts see both answers), WORKER_CONCURRENCY=32, WORKER_PREFETCH=64,
# RPC_TIMEOUT=4s, RATE_LIMIT_RPS=0 (off), LOG_LEVEL=info, K6=bin/k6; KEEP_LOGS=1
# keeps the process logs (kept anyway when a process died); K6_PROGRESS=1 shows k6's
# progress lines when stdout is not a terminal; WEBHOOKS=1 gives the partner a
# webhook endpoint (`lab stack -webhooks`): after k6 the outbox must drain within
# 60s with every event delivered once, signed (exit 3 if not), and the delivery
# latency is printed.
# Needs the services on loopback (`make services`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/godebug.sh

script=${1:-scripts/k6/load.js}
[ $# -gt 0 ] && shift
[ -f "$script" ] || { echo "load.sh: no such k6 script: $script" >&2; exit 2; }
K6=${K6:-bin/k6}
if [ ! -x "$K6" ]; then
  echo "load.sh: building k6 v1.8.1 into bin/ (once)" >&2
  GOBIN=$PWD/bin go install go.k6.io/k6@v1.8.1
  K6=bin/k6
fi

export RENEWAL_WINDOW_DAYS=${RENEWAL_WINDOW_DAYS:-400}
export WORKER_CONCURRENCY=${WORKER_CONCURRENCY:-32} WORKER_PREFETCH=${WORKER_PREFETCH:-64}
export RPC_TIMEOUT=${RPC_TIMEOUT:-4s} RATE_LIMIT_RPS=${RATE_LIMIT_RPS:-0} LOG_LEVEL=${LOG_LEVEL:-info}
args=(-name load -workers 2)
[ "${KEEP_LOGS:-0}" = 1 ] && args+=(-keep)
[ "${WEBHOOKS:-0}" = 1 ] && args+=(-webhooks)
# k6 prints a progress line a second when stdout is not a terminal (CI logs):
# quiet then, unless K6_PROGRESS=1. The end-of-test summary is printed either way.
quiet=()
[ -t 1 ] || [ "${K6_PROGRESS:-0}" = 1 ] || quiet=(--quiet)
go build -o bin/lab ./scripts/lab
exec bin/lab stack "${args[@]}" -- "$K6" run "${quiet[@]}" "$@" "$script"
