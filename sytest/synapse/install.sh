#!/usr/bin/env bash
# Installs Synapse for `presence-bench --synapse`: a Python virtual environment with
# matrix-synapse from PyPI, made once and reused. No Synapse code lives in this repo.
#
#   sytest/synapse/install.sh [VENV_DIR]    (default: target/bench-synapse-venv)
#
# Prints the venv's python on stdout when Synapse imports.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
version="${TIDINGS_SYNAPSE_VERSION:-1.163.2}"
python="${TIDINGS_PYTHON:-python3}"
venv="${1:-$root/target/bench-synapse-venv}"

installed() {
  [ -x "$venv/bin/python" ] &&
    [ "$("$venv/bin/python" -c 'import synapse, importlib.metadata as m; print(m.version("matrix-synapse"))' 2>/dev/null)" = "$version" ]
}

if ! installed; then
  echo "install-synapse: making $venv with matrix-synapse==$version (takes a minute or two)" >&2
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "matrix-synapse==$version" >&2
  installed || { echo "install-synapse: matrix-synapse $version does not import in $venv" >&2; exit 1; }
fi
echo "$venv/bin/python"
