#!/usr/bin/env bash
# The test command of README.md: unit tests of every crate and the black-box suite
# (real `tidings` processes on loopback ports, and a matrix-nio client).
#
# It installs what the tests need itself: a Python virtual environment with
# matrix-nio 0.26.0 (no e2e extra) in .venv, made once and reused.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

python="${TIDINGS_PYTHON:-python3}"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import nio' 2>/dev/null; then
  if command -v "$python" >/dev/null 2>&1; then
    echo "sytest: making $venv with matrix-nio 0.26.0" >&2
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'matrix-nio==0.26.0'
  else
    echo "sytest: no $python: the matrix-nio scenario cannot run" >&2
  fi
fi
if [ -x "$venv/bin/python" ]; then
  export TIDINGS_NIO_PYTHON="$venv/bin/python"
fi

cargo build --locked -p tidings
export TIDINGS_BIN="$root/target/debug/tidings"
cargo test --locked --workspace -- "$@"
