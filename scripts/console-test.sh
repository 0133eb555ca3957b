#!/usr/bin/env bash
# The partner console in a real browser: runs scripts/console-test.mjs
# (playwright-core driving Debian's headless Chromium) against an isolated
# stack (`lab stack`), and saves bin/console-{requests,request,events}.png.
# Installs chromium with apt-get when missing (root), and playwright-core
# from npm once, pinned, into bin/playwright (ignored). Exits non-zero on any
# failed check. Needs the services on loopback (`make services`).
set -euo pipefail
cd "$(dirname "$0")/.."
PLAYWRIGHT_VERSION=1.65.1
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  [ "$(id -u)" = 0 ] || { echo "console-test: $CHROMIUM missing: apt-get install chromium (as root)" >&2; exit 1; }
  echo "console-test: installing chromium (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
dir=bin/playwright
have=$(node -p "require('./$dir/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
if [ "$have" != "$PLAYWRIGHT_VERSION" ]; then
  command -v npm >/dev/null || { echo "console-test: npm is needed to install playwright-core" >&2; exit 1; }
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"private":true}' >"$dir/package.json"
  npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" >&2
fi
# The stack's processes get this environment: the partner's endpoint is a
# receiver on the loopback, and a failed delivery is retried within a second.
export WEBHOOK_ALLOW_HOSTS=127.0.0.1 WEBHOOK_RETRY_MIN=200ms WEBHOOK_RETRY_MAX=1s WEBHOOK_POLL_INTERVAL=100ms
export LOG_LEVEL=${LOG_LEVEL:-info} CHROMIUM
go build -o bin/lab ./scripts/lab
exec bin/lab stack -name console -workers 1 -- node scripts/console-test.mjs
