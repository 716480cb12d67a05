#!/usr/bin/env bash
# THE test command of the project: installs the real v11 clients the integration tests drive
# (into tests/clients/, git-ignored), then runs every cargo test target.
#
#   bash tests/run.sh [extra cargo test args...]
#
# The extra args go to `cargo test --all-targets`, so they add to it rather than narrow it: to run
# some tests only, give a name filter, e.g. `bash tests/run.sh nonebot`.
#
# Needs: the Rust toolchain, Python 3 with venv + pip (3.11 known good), and later Node + npm.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
clients=tests/clients

# --- Python clients (nonebot2, aiocqhttp): tests/clients/.venv -------------------------------
venv=$clients/.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
    echo "run.sh: creating $venv" >&2
    python3 -m venv --clear "$venv" || {
        echo "run.sh: 'python3 -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
        exit 1
    }
fi
want=$(sha256sum "$clients/requirements.txt" | cut -d' ' -f1)
stamp=$venv/.requirements.sha256
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "run.sh: installing $clients/requirements.txt into $venv" >&2
    start=$SECONDS
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$clients/requirements.txt"
    echo "$want" >"$stamp"
    echo "run.sh: Python clients installed in $((SECONDS - start)) s" >&2
fi

# --- Node clients (Koishi): tests/clients/node_modules ------------------------------------------
# (to come: npm install of tests/clients/package.json, stamped the same way)

# --- the tests -----------------------------------------------------------------------------------
exec cargo test --all-targets "$@"
