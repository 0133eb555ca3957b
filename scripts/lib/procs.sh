# Shared by the scripts that start their own stack (load.sh, prom-check.sh).

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
