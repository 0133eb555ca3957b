#!/usr/bin/env bash
# make cluster-test: the provisioner on a three-node RabbitMQ cluster of this
# host's RabbitMQ, with nodes lost under load (scripts/clustertest says what
# it does and checks). The machine's main broker (5672) is left alone: the
# nodes have their own names, ports and directories, and share only the
# Erlang cookie and epmd.
#
#   bash scripts/cluster-test.sh [clustertest flags: -rate 250 -phase 10s -rpc-timeout 4s]
#
# Needs, on loopback: PostgreSQL (postgres superuser without password) and
# Redis (`make services`), and the rabbitmq-server package (its node scripts,
# rabbitmqctl, rabbitmq-queues); run as root (the nodes run as the rabbitmq
# user) or as the rabbitmq user. A trap removes whatever the run made, on any
# exit: the nodes (by their pid files), the database, the Redis claim and the
# work directory. KEEP=1 keeps the work directory (node and process logs).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/godebug.sh
. scripts/lib/procs.sh

log() { printf 'cluster-test.sh: %s\n' "$*" >&2; }
for t in rabbitmqctl rabbitmq-queues psql go; do
  command -v "$t" >/dev/null || { log "$t not found (make services installs the servers and their clients)"; exit 1; }
done
rabbit_bin=$(rabbit_bin_dir) || { log "no rabbitmq-server script beside rabbitmqctl"; exit 1; }

tag=oocl$$
work=$(mktemp -d -t oo-cluster.XXXXXX)
ctpid=

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$ctpid" ] && stop_procs 150 "$ctpid"
  # What the program could not undo itself: nodes still running, the database.
  kill_pidfiles "$work"/node*/pid
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $tag WITH (FORCE)" >/dev/null 2>&1
  if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$work/bin"
go build -o "$work/bin/" ./gateway ./worker ./scripts/clustertest || { log "go build failed"; exit 1; }
# In the background, so that a signal to this script runs the trap at once.
"$work/bin/clustertest" -tag "$tag" -work "$work" -bin "$work/bin" -rabbitmq-bin "$rabbit_bin" "$@" </dev/null &
ctpid=$!
wait "$ctpid"
rc=$?
ctpid=
exit "$rc"
