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
. scripts/lib/procs.sh

log() { printf 'chaos.sh: %s\n' "$*" >&2; }
for t in rabbitmqctl redis-server go; do
  command -v "$t" >/dev/null || { log "$t not found (make services installs the servers and their clients)"; exit 1; }
done
pgbin=${TEST_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$pgbin/pg_ctl" ] || { log "no pg_ctl in $pgbin (set TEST_POSTGRES_BIN)"; exit 1; }
if [ -z "${TEST_RABBITMQ_BIN:-}" ]; then
  TEST_RABBITMQ_BIN=$(rabbit_bin_dir) || { log "no rabbitmq-server script beside rabbitmqctl (set TEST_RABBITMQ_BIN)"; exit 1; }
fi
export TEST_RABBITMQ_BIN

work=$(mktemp -d -t oo-chaos.XXXXXX)
# The private servers run as their own users, which must reach their
# directories under this one.
chmod 755 "$work"
chpid=

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$chpid" ] && stop_procs 300 "$chpid"
  # What the program could not undo itself: servers still running.
  kill_pidfiles "$work"/oo-rabbit*/pid "$work"/oo-postgres*/data/postmaster.pid
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
