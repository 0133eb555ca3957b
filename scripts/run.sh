#!/usr/bin/env bash
# make run: migrate, print demo partner keys (a test key, a live key), then one gateway and two workers
# in the foreground. Ctrl-C (or SIGTERM) stops all three. Expects the services
# up (scripts/services.sh) and the binaries built (make build).
#
# TRACES=1 (make run TRACES=1) also runs Jaeger (all in one, spans kept in
# memory, UI on 127.0.0.1:16686) and points the processes' OTLP exporters at
# it. Jaeger is built once into bin/jaeger from the Go module proxy (a few
# minutes), as load.sh builds k6.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/godebug.sh

export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/oneoffice?sslmode=disable}
export HTTP_ADDR=${HTTP_ADDR:-127.0.0.1:8080}
# The key that seals webhook signing secrets: made once and kept with the
# local data, so that endpoints set in one run still work in the next.
if [ -z "${WEBHOOK_SECRET_KEY:-}" ]; then
  mkdir -p var
  [ -s var/webhook-secret-key ] || (umask 077; head -c 32 /dev/urandom | base64 >var/webhook-secret-key)
  WEBHOOK_SECRET_KEY=$(cat var/webhook-secret-key)
fi
export WEBHOOK_SECRET_KEY
gw_metrics=${GATEWAY_METRICS_ADDR:-127.0.0.1:9100}
w1_metrics=${WORKER1_METRICS_ADDR:-127.0.0.1:9101}
w2_metrics=${WORKER2_METRICS_ADDR:-127.0.0.1:9102}
logs=${LOG_DIR:-var/log}
mkdir -p "$logs"

# The default database is created on first run; other names are the operator's.
db=$(sed -E 's#^[a-z]+://[^/]*/([^?]*).*#\1#' <<<"$DATABASE_URL")
if [ "$db" = oneoffice ] && command -v psql >/dev/null; then
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'oneoffice'" | grep -q 1 ||
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE oneoffice"
fi

bin/gateway migrate >/dev/null
key=$(bin/gateway keys create --partner "Demo partner")
test_key=$(bin/gateway keys create --partner "Demo partner" --test)

pids=()
if [ "${TRACES:-}" = 1 ]; then
  jaeger_version=v1.75.0 # Jaeger v2's binary, cmd/jaeger
  if [ ! -x bin/jaeger ]; then
    echo "run.sh: building Jaeger $jaeger_version into bin/ (once, a few minutes)" >&2
    # Jaeger's go.mod has replace directives, so go install cannot build it:
    # a module of its own under bin/ takes it as a tool instead.
    mkdir -p bin/jaeger-build
    (cd bin/jaeger-build && { [ -f go.mod ] || go mod init jaeger-build >/dev/null 2>&1; } &&
      go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$jaeger_version" &&
      go build -o ../jaeger github.com/jaegertracing/jaeger/cmd/jaeger)
  fi
  bin/jaeger >>"$logs/jaeger.log" 2>&1 & pids+=($!)
  export OTEL_EXPORTER_OTLP_ENDPOINT=${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:4318}
fi
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping gateway and workers..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "stopped."
  exit 0
}
trap stop INT TERM EXIT

METRICS_ADDR=$gw_metrics bin/gateway >>"$logs/gateway.log" 2>&1 & pids+=($!)
METRICS_ADDR=$w1_metrics bin/worker >>"$logs/worker1.log" 2>&1 & pids+=($!)
METRICS_ADDR=$w2_metrics bin/worker >>"$logs/worker2.log" 2>&1 & pids+=($!)

for _ in $(seq 1 50); do
  curl -fs "http://$gw_metrics/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

cat <<MSG

OneOffice provisioner is up.
  API:        http://$HTTP_ADDR/   (gateway metrics http://$gw_metrics/metrics)
  workers:    metrics on http://$w1_metrics/metrics and http://$w2_metrics/metrics
  logs:       $logs/gateway.log, $logs/worker1.log, $logs/worker2.log
  test key:   $test_key   (sandbox: test data only, answers say "livemode": false)
  live key:   $key

Try:
  curl -s -X GET http://$HTTP_ADDR/ -H 'x-api-key: $test_key' -H 'Content-Type: application/json' \\
    --data '{"method":"createCustomer","params":{"id":"ABC","name":"ABC Company","admin":{"email":"test3@example.com"}}}'

Ctrl-C stops everything.
MSG
if [ "${TRACES:-}" = 1 ]; then
  cat <<MSG
Traces: Jaeger on http://127.0.0.1:16686 (log $logs/jaeger.log). A call's answer carries
  traceparent: 00-TRACE_ID-SPAN_ID-01; open http://127.0.0.1:16686/trace/TRACE_ID
  (curl -si shows the header), or search the service oneoffice-gateway.
MSG
fi
wait -n "${pids[@]}" || true
echo "a process exited; see $logs" >&2
