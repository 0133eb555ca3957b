# Shared by the scripts that start their own stack or servers (load.sh, prom-check.sh,
# cluster-test.sh, chaos.sh).

# stop_procs TRIES PID...: SIGTERM to each, wait up to TRIES x 0.2 s for all of
# them to exit (they drain their work on SIGTERM), then SIGKILL what is left.
stop_procs() {
  local tries=$1 p alive
  shift
  for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 1 "$tries"); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
}

# kill_pidfiles PIDFILE...: SIGKILL to the live process whose pid is the first
# line of each file that exists: a server its program could not stop itself.
kill_pidfiles() {
  local pf pid
  for pf in "$@"; do
    [ -f "$pf" ] || continue
    pid=$(head -n 1 "$pf" 2>/dev/null)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
    printf '%s: killing server pid %s left running\n' "${0##*/}" "$pid" >&2
    kill -KILL "$pid"
  done
}

# rabbit_bin_dir prints the directory of RabbitMQ's node scripts
# (rabbitmq-server), beside rabbitmqctl or in the package's place.
rabbit_bin_dir() {
  local d
  d=$(dirname "$(readlink -f "$(command -v rabbitmqctl)")")
  [ -x "$d/rabbitmq-server" ] || d=/usr/lib/rabbitmq/bin
  [ -x "$d/rabbitmq-server" ] || return 1
  printf '%s\n' "$d"
}
