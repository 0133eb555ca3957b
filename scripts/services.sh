#!/usr/bin/env bash
# Make sure PostgreSQL (5432), Redis (6379) and RabbitMQ (5672, metrics on 15692)
# answer on 127.0.0.1. Idempotent: a service that already answers is used as is.
# Order per service: already running -> start the local install -> docker compose
# (if a Docker engine answers) -> apt-get install (root only) and start.
#   --prometheus   also make sure `prometheus` and `promtool` are installed (never started)
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_FILE="$ROOT_DIR/deploy/docker-compose.yml"
WANT_PROMETHEUS=0
APT_UPDATED=0
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0

usage() { sed -n '2,6s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
log()  { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" -eq 0 ]; }
tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
# A Docker engine that answers, with the compose plugin (`docker compose`).
docker_ok() { have docker && timeout 20 docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; }

cleanup() { if [ "$POLICY_RC_OURS" = 1 ]; then rm -f "$POLICY_RC"; fi; }
trap cleanup EXIT

# wait_for NAME SECONDS CMD...: poll CMD once a second until it succeeds.
wait_for() {
  local name=$1 secs=$2 deadline; shift 2
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$name: did not answer within ${secs}s"
    sleep 1
  done
}

# apt_install PKG...: root only; one `apt-get update` per run; services are not
# auto-started by maintainer scripts (we start them ourselves, or not at all).
apt_install() {
  is_root || die "$1: not installed, no Docker engine, and not root: install it (apt-get install -y $*) or run as root"
  if [ ! -e "$POLICY_RC" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC" && chmod +x "$POLICY_RC" && POLICY_RC_OURS=1
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "apt-get: installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

compose_up() { # compose_up SERVICE
  log "$1: not installed locally, starting it with docker compose"
  docker compose -f "$COMPOSE_FILE" up -d "$1" >/dev/null || die "$1: docker compose up failed"
}

# ---------------------------------------------------------------- PostgreSQL
pg_up() { if have pg_isready; then pg_isready -q -h 127.0.0.1 -p 5432; else tcp_open 5432; fi; }
pg_installed() { have pg_ctlcluster && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }
pg_trust_ok() { psql -h 127.0.0.1 -U postgres -w -Atqc 'select 1' postgres >/dev/null 2>&1; }

ensure_postgres() {
  local ours=0 ver
  if pg_up; then log "postgres: already running on 127.0.0.1:5432"; pg_check_auth 0; return; fi
  tcp_open 5432 && die "postgres: 127.0.0.1:5432 is taken but does not answer pg_isready"
  if ! pg_installed; then
    if docker_ok; then compose_up postgres; wait_for postgres 60 pg_up; log "postgres: started (docker)"; return; fi
    apt_install postgresql; ours=1
  fi
  # shellcheck disable=SC2012  # version directories: plain numbers
  ver=$(ls /etc/postgresql 2>/dev/null | head -1 || true)
  if [ -z "$ver" ] || [ ! -d "/etc/postgresql/$ver/main" ]; then
    # shellcheck disable=SC2012
    ver=${ver:-$(ls /usr/lib/postgresql | sort -V | tail -1)}
    log "postgres: creating cluster $ver/main"
    pg_createcluster "$ver" main >/dev/null; ours=1
  fi
  if is_root; then mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql; fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  wait_for postgres 30 pg_up
  log "postgres: started (cluster $ver/main on 127.0.0.1:5432)"
  pg_check_auth "$ours" "$ver"
}

# pg_check_auth OURS [VER]: psql -h 127.0.0.1 -U postgres must work without a
# password. Only a cluster this run installed/created is switched to trust.
pg_check_auth() {
  have psql || { warn "postgres: psql not found, cannot check passwordless login"; return; }
  pg_trust_ok && return
  local hba="/etc/postgresql/${2:-}/main/pg_hba.conf"
  { [ "$1" = 1 ] && [ -f "$hba" ]; } \
    || die "postgres: 'psql -h 127.0.0.1 -U postgres' needs a password; set 'trust' for 127.0.0.1/32 and ::1/128 in pg_hba.conf (not touching a cluster this script did not create)"
  log "postgres: enabling trust auth for 127.0.0.1/32 and ::1/128 in $hba"
  { printf 'host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n'; cat "$hba"; } >"$hba.new"
  chown --reference="$hba" "$hba.new"; chmod --reference="$hba" "$hba.new"; mv "$hba.new" "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$2" main reload
  wait_for "postgres (trust login)" 15 pg_trust_ok
}

# ---------------------------------------------------------------- Redis
redis_up() {
  if have redis-cli; then [ "$(timeout 5 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; else tcp_open 6379; fi
}

ensure_redis() {
  if redis_up; then log "redis: already running on 127.0.0.1:6379"; return; fi
  tcp_open 6379 && die "redis: 127.0.0.1:6379 is taken but does not answer PING"
  if ! have redis-server; then
    if docker_ok; then compose_up redis; wait_for redis 30 redis_up; log "redis: started (docker)"; return; fi
    apt_install redis-server
  fi
  local dir=/var/lib/redis logdir=/var/log/redis
  if ! is_root; then dir="${TMPDIR:-/tmp}/redis-ci"; logdir="$dir"; fi
  mkdir -p "$dir" "$logdir"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir "$dir" --logfile "$logdir/ci.log" >/dev/null
  wait_for redis 30 redis_up
  log "redis: started on 127.0.0.1:6379"
}

# ---------------------------------------------------------------- RabbitMQ
rmq_ctl() { timeout 30 rabbitmqctl -q "$@"; }
# "Ready" = AMQP port open and, if rabbitmqctl can reach a local node, fully booted.
rabbit_ready() { tcp_open 5672 && { ! have rabbitmqctl || rmq_ctl await_startup --timeout 10 >/dev/null 2>&1; }; }

ensure_rabbitmq() {
  if tcp_open 5672; then
    log "rabbitmq: already running on 127.0.0.1:5672"
  elif have rabbitmq-server; then
    rabbitmq-server -detached >/dev/null 2>&1 || true  # fails harmlessly if a node is booting
    wait_for rabbitmq 60 rabbit_ready
    log "rabbitmq: started on 127.0.0.1:5672"
  elif docker_ok; then
    compose_up rabbitmq; wait_for rabbitmq 90 tcp_open 5672
    log "rabbitmq: started (docker; prometheus plugin enabled by the compose file)"; return
  else
    apt_install rabbitmq-server
    rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_for rabbitmq 60 rabbit_ready
    log "rabbitmq: started on 127.0.0.1:5672"
  fi
  if ! have rabbitmqctl || ! rmq_ctl status >/dev/null 2>&1; then
    warn "rabbitmq: rabbitmqctl cannot reach the node (running in Docker, or not root?); skipping plugin/user checks"
    return
  fi
  rabbit_prometheus
  rmq_ctl authenticate_user guest guest >/dev/null 2>&1 \
    || warn "rabbitmq: user guest/guest cannot authenticate; create it or set AMQP credentials"
}

rabbit_prometheus() {
  if timeout 30 rabbitmq-plugins -q is_enabled rabbitmq_prometheus >/dev/null 2>&1; then
    log "rabbitmq: prometheus plugin already enabled (metrics on 127.0.0.1:15692)"
  elif timeout 60 rabbitmq-plugins -q enable rabbitmq_prometheus >/dev/null 2>&1; then
    if (wait_for "rabbitmq metrics" 20 tcp_open 15692) 2>/dev/null; then
      log "rabbitmq: prometheus plugin enabled (metrics on 127.0.0.1:15692)"
    else
      warn "rabbitmq: prometheus plugin enabled but :15692 does not answer yet"
    fi
  else
    warn "rabbitmq: could not enable rabbitmq_prometheus (queue metrics on :15692 unavailable)"
  fi
}

# ---------------------------------------------------------------- Prometheus (install only)
ensure_prometheus_tools() {
  if have prometheus && have promtool; then
    log "prometheus: already installed ($(promtool --version 2>&1 | head -1))"; return
  fi
  apt_install prometheus
  { have prometheus && have promtool; } || die "prometheus: installed, but prometheus/promtool are not on PATH"
  log "prometheus: installed ($(promtool --version 2>&1 | head -1)); not started"
}

for arg in "$@"; do
  case "$arg" in
    --prometheus) WANT_PROMETHEUS=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
  esac
done

ensure_postgres
ensure_redis
ensure_rabbitmq
if [ "$WANT_PROMETHEUS" = 1 ]; then ensure_prometheus_tools; fi
# The test hosts of the harness (network namespaces, veth links) need ip; root only.
if is_root && ! have ip; then apt_install iproute2; fi
log "services: all reachable on 127.0.0.1"
