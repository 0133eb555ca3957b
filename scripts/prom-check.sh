#!/usr/bin/env bash
# Checks the shipped monitoring files against a live stack (SPEC section 7):
#   deploy/prometheus/prometheus.yml, deploy/prometheus/rules/{recording,alerts}.yml,
#   deploy/grafana/oneoffice-dashboard.json.
# 1. prometheus/promtool present (scripts/services.sh --prometheus), promtool check
#    config and rules.
# 2. An isolated stack: the script runs itself again under `lab stack` (scripts/lab):
#    own database, AMQP vhost and Redis DB, free loopback ports, a key, one gateway
#    and two workers, whose settings (STACK_NAME, GATEWAY_METRICS, ...) it reads.
# 3. A real Prometheus on a free loopback port, with a temp copy of the config whose
#    targets point at this stack, scraping and evaluating every second.
# 4. ~40 s of bounded curl load (creates, reads, duplicates, bad keys, bad params).
# 5. Every dashboard query (variables substituted), every template-variable query,
#    every alert and recording rule evaluated through /api/v1/query: each must parse;
#    Traffic and Latency panels must return series with values.
# Prints "panel/alert -> series count" lines, then "N passed, M failed"; exits non-zero
# on failure. Cleans everything up on exit. Needs PostgreSQL, Redis and RabbitMQ on
# loopback (postgres superuser without password, guest/guest, rabbitmqctl).
#   PROM_CHECK_LOAD_SECONDS  load duration (default 40)
#   PROM_CHECK_KEEP=1        keep the temp dir (logs, config) for debugging
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
. scripts/lib/godebug.sh
load_seconds=${PROM_CHECK_LOAD_SECONDS:-40}
time_limit=280 # seconds; the whole check must end well within 5 minutes
work=$(mktemp -d "${TMPDIR:-/tmp}/prom-check.XXXXXX")
pids=()
# The counts of the static checks carry over to the run on the stack.
pass=${PROM_CHECK_PASSED:-0} fail=${PROM_CHECK_FAILED:-0}
exec </dev/null

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait "${pids[@]}" 2>/dev/null
  if [ "${PROM_CHECK_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ok()  { pass=$((pass + 1)); printf 'ok   %s\n' "$*"; }
bad() { fail=$((fail + 1)); printf 'FAIL %s\n' "$*"; }
die() { bad "$*"; echo "$pass passed, $fail failed"; exit 1; }
step() { printf '\n== %s\n' "$*"; }
# jq_check LABEL FILTER: the dashboard passes the jq filter.
jq_check() { if jq -e "$2" "$dash" >/dev/null; then ok "$1"; else bad "$1"; fi; }
dash=deploy/grafana/oneoffice-dashboard.json

if [ "${1:-}" != --on-stack ]; then
  # ------------------------------------------------------------------ 1. tools, static checks
  step "tools and static checks"
  if timeout 200 bash scripts/services.sh --prometheus >"$work/services.log" 2>&1; then
    ok "services (postgres, redis, rabbitmq) and prometheus/promtool"
  else
    tail -5 "$work/services.log"
    die "scripts/services.sh --prometheus"
  fi
  if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then die "prometheus/promtool on PATH"; fi
  for t in jq curl rabbitmqctl; do
    command -v "$t" >/dev/null || die "$t is required"
  done

  if promtool check config deploy/prometheus/prometheus.yml >"$work/check.log" 2>&1; then
    ok "promtool check config deploy/prometheus/prometheus.yml"
  else
    bad "promtool check config deploy/prometheus/prometheus.yml"; sed 's/^/     /' "$work/check.log"
  fi
  for f in deploy/prometheus/rules/recording.yml deploy/prometheus/rules/alerts.yml; do
    if promtool check rules "$f" >"$work/check.log" 2>&1; then
      ok "promtool check rules $f ($(grep -o '[0-9]* rules found' "$work/check.log" | head -1))"
    else
      bad "promtool check rules $f"; sed 's/^/     /' "$work/check.log"
    fi
  done

  jq -e . "$dash" >/dev/null 2>&1 || die "$dash is valid JSON"
  jq_check "dashboard uid oneoffice-provisioner (provisioning-ready, id null)" '.uid == "oneoffice-provisioner" and .id == null'
  jq_check "dashboard variable datasource (type datasource, prometheus)" \
    '[.templating.list[] | select(.name == "datasource" and .type == "datasource" and .query == "prometheus")] | length == 1'
  jq_check "dashboard variable instance" '[.templating.list[] | select(.name == "instance" and .type == "query")] | length == 1'
  jq_check "dashboard rows Traffic,Latency,Errors,Queue,Workers,Dependencies,Webhooks,Safety and housekeeping" \
    '[.panels[] | select(.type == "row") | .title] == ["Traffic","Latency","Errors","Queue","Workers","Dependencies","Webhooks","Safety and housekeeping"]'
  # shellcheck disable=SC2016 # a literal ${datasource}
  jq_check 'every panel and query uses ${datasource}' \
    '[.. | objects | select(has("targets")) | .datasource.uid, (.targets[].datasource.uid)] | map(select(. != "${datasource}")) | length == 0'
  for f in deploy/grafana/provisioning/dashboards.yml deploy/grafana/provisioning/datasources.yml; do
    if [ -f "$f" ] && python3 -c 'import sys,yaml; d=yaml.safe_load(open(sys.argv[1])); assert d["apiVersion"]==1' "$f" 2>/dev/null; then
      ok "$f parses (apiVersion 1)"
    elif [ -f "$f" ] && ! python3 -c 'import yaml' 2>/dev/null && grep -q '^apiVersion: 1$' "$f"; then
      ok "$f has apiVersion 1 (no YAML parser here to check more)"
    else
      bad "$f parses (apiVersion 1)"
    fi
  done

  step "isolated stack"
  go build -o bin/lab ./scripts/lab || die "go build ./scripts/lab"
  rm -rf "$work"
  # Admission control on, as deploy/k8s/base/config.yaml has it: the limit panel shows it.
  export SHUTDOWN_TIMEOUT=3s ADMISSION_MAX_IN_FLIGHT=128 PROM_CHECK_PASSED=$pass PROM_CHECK_FAILED=$fail
  # At the time limit (exit 124) lab stack gets SIGTERM: it stops this
  # script's run on the stack and removes the stack.
  exec timeout --foreground $((time_limit - SECONDS)) bin/lab stack -name promcheck -workers 2 -- bash scripts/prom-check.sh --on-stack
fi

tag=$STACK_NAME key=$API_KEY URL=$BASE_URL/
gw_port=${GATEWAY_METRICS##*:}
read -r w1 w2 <<<"$WORKER_METRICS"
w1_port=${w1##*:} w2_port=${w2##*:} prom_port=${SPARE_ADDR##*:}
ok "stack $tag: gateway (api $HTTP_ADDR, metrics :$gw_port) and workers (metrics :$w1_port, :$w2_port) ready"

# ------------------------------------------------------------------ 3. Prometheus
step "prometheus on 127.0.0.1:$prom_port"
mkdir -p "$work/prom" "$work/tsdb"
cp -r deploy/prometheus/. "$work/prom/"
sed -i -E \
  -e "s/127\.0\.0\.1:9100\b/127.0.0.1:$gw_port/g" \
  -e "s/127\.0\.0\.1:9101\b/127.0.0.1:$w1_port/g" \
  -e "s/127\.0\.0\.1:9102\b/127.0.0.1:$w2_port/g" \
  -e "s/^([[:space:]]*)(scrape_interval|scrape_timeout|evaluation_interval):.*/\1\2: 1s/" \
  "$work/prom/prometheus.yml"
if ! grep -q "127.0.0.1:$gw_port" "$work/prom/prometheus.yml" || ! grep -q "127.0.0.1:$w2_port" "$work/prom/prometheus.yml"; then
  die "temp config points at this stack's ports"
fi
promtool check config "$work/prom/prometheus.yml" >"$work/check.log" 2>&1 ||
  { cat "$work/check.log"; die "promtool check config (temp copy)"; }
ok "temp config: targets :$gw_port :$w1_port :$w2_port :15692, scrape and evaluation every 1s"
prometheus --config.file="$work/prom/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --storage.tsdb.retention.time=1h --web.listen-address="127.0.0.1:$prom_port" \
  --log.level=warn >"$work/prometheus.log" 2>&1 & pids+=($!)
PROM="http://127.0.0.1:$prom_port"
ready=0
for _ in $(seq 1 100); do
  curl -fs --max-time 2 "$PROM/-/ready" >/dev/null 2>&1 && { ready=1; break; }
  sleep 0.3
done
[ "$ready" = 1 ] || { tail -20 "$work/prometheus.log"; die "prometheus ready"; }
ok "prometheus ready"

# ------------------------------------------------------------------ 4. load
step "load: ${load_seconds}s, 3 parallel curl loops"
# call KEY BODY: one API call; appends its status code to the loop's file.
call() {
  curl -s -o /dev/null -w '%{http_code}\n' --max-time 6 -X GET "$URL" \
    -H "x-api-key: $1" -H 'Content-Type: application/json' --data "$2" >>"$out" 2>/dev/null || echo 000 >>"$out"
}
load_loop() {
  local n=$1 i=0 id end=$((SECONDS + load_seconds))
  local out="$work/load$n.codes"
  : >"$out"
  while [ "$SECONDS" -lt "$end" ]; do
    i=$((i + 1)); id="L${n}C$i"
    call "$key" '{"method":"createCustomer","params":{"id":"'"$id"'","name":"'"$id"' Co","admin":{"email":"'"$id"'@example.com"}}}'
    call "$key" '{"method":"createFirstOrder","params":{"customer":"'"$id"'","id":"'"$id"'O1","product":"oo-lite","licenses":5,"duration":"monthly"}}'
    call "$key" '{"method":"getOrder","params":{"id":"'"$id"'O1"}}'
    # the same create again: answered from the idempotency record (replayed)
    call "$key" '{"method":"createCustomer","params":{"id":"'"$id"'","name":"'"$id"' Co","admin":{"email":"'"$id"'@example.com"}}}'
    call "$key" '{"method":"getCustomer","params":{"id":"'"$id"'"}}'
    if [ $((i % 3)) = 0 ]; then
      call "not-a-valid-key-$n-$i" '{"method":"getCustomer","params":{"id":"ABC"}}'   # 401 invalid
      call "" '{"method":"getCustomer","params":{"id":"ABC"}}'                        # 401 missing
    fi
    if [ $((i % 4)) = 0 ]; then
      call "$key" '{"method":"createCustomer","params":{"id":"'"$id"'","name":"Other","admin":{"email":"x@example.com"}}}' # 409 mismatch
      call "$key" '{"method":"createUser","params":{"email":""}}'                        # 400 invalid params
      call "$key" '{"method":"noSuchMethod","params":{}}'                                # 400 unknown
    fi
    sleep 0.05
  done
}
load_pids=()
for n in 1 2 3; do
  load_loop "$n" & load_pids+=($!); pids+=($!)
done
wait "${load_pids[@]}" 2>/dev/null
qtime=$(date +%s)
sleep 3 # one more scrape and rule evaluation after the last call
codes=$(cat "$work"/load*.codes | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')
total=$(cat "$work"/load*.codes | wc -l)
if [ "$total" -gt 50 ]; then ok "load: $total calls ($codes)"; else bad "load: only $total calls ($codes)"; fi

# ------------------------------------------------------------------ 5. queries
step "queries at the end of the load (time=$qtime)"
# query EXPR: prints "STATUS SERIES WITHVALUES" or "ERR message".
query() {
  curl -s --max-time 15 -X POST "$PROM/api/v1/query" --data-urlencode "query=$1" --data-urlencode "time=$qtime" |
    jq -r 'if .status == "success" then
             (if .data.resultType == "vector" or .data.resultType == "matrix" then
                "ok \(.data.result | length) \([.data.result[] | select((.value[1] // "NaN") != "NaN")] | length)"
              else "ok 1 \(if .data.result[1] == "NaN" then 0 else 1 end)" end)
           else "ERR \(.error // "no answer")" end' 2>/dev/null || echo "ERR no answer from prometheus"
}
# row LABEL RESULT NEED: NEED=values demands a series with a value, NEED=parse only parsing.
report() {
  local label=$1 res=$2 need=$3 st series vals
  read -r st series vals <<<"$res"
  if [ "$st" != ok ]; then
    bad "$(printf '%-82.82s -> %s' "$label" "${res#ERR }")"
  elif [ "$need" = values ] && [ "${vals:-0}" -lt 1 ]; then
    bad "$(printf '%-82.82s -> %s series, %s with values (needs >= 1 with a value)' "$label" "$series" "$vals")"
  elif [ "$need" = series ] && [ "${series:-0}" -lt 1 ]; then
    bad "$(printf '%-82.82s -> 0 series (needs >= 1)' "$label")"
  else
    ok "$(printf '%-82.82s -> %s series (%s with values)' "$label" "$series" "$vals")"
  fi
}

inst_re="127.0.0.1:($gw_port|$w1_port|$w2_port)"
subst() {
  sed -E \
    -e "s/\\$\\{instance(:[a-z]+)?\\}|\\\$instance\b/$inst_re/g" \
    -e "s/\\$\\{vhost(:[a-z]+)?\\}|\\\$vhost\b/$tag/g" \
    -e 's/\$\{?__rate_interval\}?/30s/g' \
    -e 's/\$\{?__interval_ms\}?/5000/g' \
    -e 's/\$\{?__interval\}?/5s/g' \
    -e 's/\$\{?__range_s\}?/300/g' \
    -e 's/\$\{?__range\}?/5m/g'
}

echo "-- targets"
for want in "oneoffice-gateway 1" "oneoffice-worker 2" "rabbitmq 1"; do
  read -r job n <<<"$want"
  report "target job $job: $n up" "$(query "sum(up{job=\"$job\"}) == $n")" values
done
res=$(query "sum(increase(oneoffice_idempotency_outcomes_total{outcome=\"replayed\"}[2m])) > 0")
report "load produced idempotency replays" "$res" values
res=$(query "sum(increase(oneoffice_auth_failures_total[2m])) > 0")
report "load produced 401s" "$res" values
res=$(query "min(oneoffice_gateway_admission_limit{job=\"oneoffice-gateway\"}) > 0")
report "gateway admission limit set (ADMISSION_MAX_IN_FLIGHT)" "$res" values
res=$(query "sum(rabbitmq_queue_consumers{vhost=\"$tag\",queue=\"oneoffice.commands\"}) > 0")
report "rabbitmq per-object metrics show this vhost's consumers" "$res" values

echo "-- dashboard panels (Traffic and Latency need a series with a value), annotations, template variables"
echo "   (each needs a series), and the rules prometheus loaded: each must parse and evaluate"
{
  jq -r '
    (foreach .panels[] as $p ("";
      if $p.type == "row" then $p.title else . end;
      . as $row
      | (if $p.type == "row" then ($p.panels // [])[] else $p end) as $c
      | ($c.targets // [])[] | select((.expr // "") != "")
      | ["\($row) / \($c.title) [\(.refId)]", (if $row == "Traffic" or $row == "Latency" then "values" else "parse" end), .expr])),
    (.annotations.list[] | select((.expr // "") != "") | ["annotation \(.name)", "parse", .expr]),
    # label_values(SELECTOR, label) -> SELECTOR; query_result(EXPR) -> EXPR
    (.templating.list[] | select(.type == "query")
      | ["variable \(.name)", "series", ((if (.query | type) == "object" then .query.query else .query end) // .definition
        | sub("^\\s*label_values\\((?<s>.*),\\s*[A-Za-z_][A-Za-z0-9_]*\\s*\\)\\s*$"; "\(.s)")
        | sub("^\\s*query_result\\((?<e>.*)\\)\\s*$"; "\(.e)"))])
    | [.[0], .[1], (.[2] | @base64)] | @tsv' "$dash"
  curl -s --max-time 15 "$PROM/api/v1/rules" | jq -r '.data.groups[].rules[]
    | ["\(if .type == "alerting" then "alert" else "record" end) \(.name)",
       (if .health == "err" then "rule health err: \(.lastError // "" | gsub("[\t\n]"; " "))" else "parse" end),
       (.query | @base64)] | @tsv'
} >"$work/queries.tsv"
grep -q ' \[' "$work/queries.tsv" || bad "no panel query found in $dash"
rules=0
while IFS=$'\t' read -r label need expr64; do
  expr=$(printf '%s' "$expr64" | base64 -d | subst)
  case "$label" in alert\ * | record\ *) rules=$((rules + 1)) ;; esac
  if [[ "$need" == rule* ]]; then
    bad "$(printf '%-82.82s -> %s' "$label" "$need")"
  # shellcheck disable=SC2016 # a literal $ in a regex
  elif grep -qE '\$(\{[A-Za-z_]|[A-Za-z_])' <<<"$expr"; then
    bad "$(printf '%-82.82s -> unknown variable left in: %s' "$label" "$expr")"
  else
    report "$label" "$(query "$expr")" "$need"
  fi
done <"$work/queries.tsv"
want_rules=$(cat deploy/prometheus/rules/recording.yml deploy/prometheus/rules/alerts.yml | grep -cE '^[[:space:]]*- (record|alert):')
if [ "$rules" = "$want_rules" ]; then ok "prometheus loaded every rule ($rules)"; else bad "prometheus loaded $rules rules, the files have $want_rules"; fi

echo
if [ "$fail" -ne 0 ]; then
  echo "logs: gateway/worker/prometheus logs were in $work (set PROM_CHECK_KEEP=1 to keep them)"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
