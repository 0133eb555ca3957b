# Shared by the scripts that run on an isolated stack (load.sh, prom-check.sh).
# stack_up [LAB STACK FLAGS] brings one up with `lab stack` (scripts/lab/stack
# lists what it sets: BASE_URL, API_KEY, STACK_NAME, GATEWAY_METRICS, ...) and
# sets its settings in this shell; stack_down, in the EXIT trap, stops it,
# which removes everything it made, and sets stack_rc to its exit status.

stack_dir=
stack_pid=
stack_rc=0

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
  wait "$@" 2>/dev/null
}

stack_up() {
  stack_dir=$(mktemp -d -t oo-stack.XXXXXX) || return 1
  go build -o "$stack_dir/lab" ./scripts/lab || { echo "stack: go build ./scripts/lab failed" >&2; return 1; }
  # In the background, so that a signal to the script runs its trap at once.
  "$stack_dir/lab" stack -env "$stack_dir/env" "$@" </dev/null &
  stack_pid=$!
  until [ -f "$stack_dir/env" ]; do
    if ! kill -0 "$stack_pid" 2>/dev/null; then
      wait "$stack_pid"
      stack_rc=$? stack_pid=
      echo "stack: lab stack failed (exit $stack_rc)" >&2
      return 1
    fi
    sleep 0.2
  done
  . "$stack_dir/env"
}

stack_down() {
  if [ -n "$stack_pid" ]; then
    kill -TERM "$stack_pid" 2>/dev/null
    wait "$stack_pid"
    stack_rc=$? stack_pid=
  fi
  [ -z "$stack_dir" ] || rm -rf "$stack_dir"
  stack_dir=
}
