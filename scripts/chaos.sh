#!/usr/bin/env bash
# make chaos: the fault suite. The provisioner under partner-like load on a
# RabbitMQ node, a Redis server and a PostgreSQL cluster of its own, while
# workers, the broker, Redis and PostgreSQL fail one at a time
# (scripts/chaos says what it does and checks). The machine's servers are
# left alone: the private ones run on free loopback ports in a work directory.
#
#   bash scripts/chaos.sh [chaos flags: -rate 150 -phase 10s -rpc-timeout 4s]
#
# Needs the rabbitmq-server, redis-server and PostgreSQL 15 server packages
# (`make services` installs them); run as root (the private RabbitMQ node
# and PostgreSQL cluster run as the rabbitmq and postgres users) or as a user
# that may run both. A trap removes whatever the run made, on any exit: the
# private servers (by their pid files) and the work directory. KEEP=1 keeps
# the work directory (server and process logs).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/godebug.sh

log() { printf 'chaos.sh: %s\n' "$*" >&2; }
for t in rabbitmqctl redis-server go; do
  command -v "$t" >/dev/null || { log "$t not found (make services installs the servers and their clients)"; exit 1; }
done
pgbin=${TEST_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$pgbin/pg_ctl" ] || { log "no pg_ctl in $pgbin (set TEST_POSTGRES_BIN)"; exit 1; }
rabbit_bin=$(dirname "$(readlink -f "$(command -v rabbitmqctl)")")
[ -x "$rabbit_bin/rabbitmq-server" ] || rabbit_bin=/usr/lib/rabbitmq/bin
export TEST_RABBITMQ_BIN=${TEST_RABBITMQ_BIN:-$rabbit_bin}

work=$(mktemp -d -t oo-chaos.XXXXXX)
# The private servers run as their own users, which must reach their
# directories under this one.
chmod 755 "$work"
chpid=

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$chpid" ] && kill -0 "$chpid" 2>/dev/null; then
    kill -TERM "$chpid" 2>/dev/null
    for _ in $(seq 1 300); do kill -0 "$chpid" 2>/dev/null || break; sleep 0.2; done
  fi
  # What the program could not undo itself: servers still running.
  local pf pid
  for pf in "$work"/oo-rabbit*/pid "$work"/oo-postgres*/data/postmaster.pid; do
    [ -f "$pf" ] || continue
    pid=$(head -n 1 "$pf" 2>/dev/null)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && { log "killing server pid $pid left running"; kill -KILL "$pid"; }
  done
  if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$work/bin"
go build -o "$work/bin/" ./scripts/chaos || { log "go build failed"; exit 1; }
keep=()
[ "${KEEP:-0}" = 1 ] && keep=(-keep)
# Everything the run makes goes under the work directory; in the background,
# so that a signal to this script runs the trap at once.
TMPDIR=$work "$work/bin/chaos" "${keep[@]}" "$@" </dev/null &
chpid=$!
wait "$chpid"
rc=$?
chpid=
exit "$rc"
