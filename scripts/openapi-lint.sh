#!/usr/bin/env bash
# Lints the OpenAPI document with Redocly CLI (its recommended rules plus
# gateway/internal/openapi/redocly.yaml). The CLI is installed from npm once,
# pinned, into bin/redocly (ignored); later runs use that copy and need no
# network.
set -euo pipefail
cd "$(dirname "$0")/.."
REDOCLY_VERSION=2.77.0
dir=bin/redocly
cli=$dir/node_modules/.bin/redocly
if [ "$("$cli" --version 2>/dev/null)" != "$REDOCLY_VERSION" ]; then
  command -v npm >/dev/null || { echo "openapi-lint: npm is needed to install @redocly/cli" >&2; exit 1; }
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "@redocly/cli@$REDOCLY_VERSION" >&2
fi
REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
  "$cli" lint --config gateway/internal/openapi/redocly.yaml gateway/internal/openapi/openapi.json
