#!/usr/bin/env bash
# Installs what the Hydrogen scenario needs and bundles Hydrogen into dist/:
# Debian's chromium (only if missing), the pinned npm packages (puppeteer-core without
# its own browser download), then esbuild. Run by .ci/run before the test suite.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null 2>&1; then
  echo "hydrogen: installing Debian's chromium" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d node_modules/hydrogen-view-sdk ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "hydrogen: npm ci" >&2
  PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi
node build.mjs
