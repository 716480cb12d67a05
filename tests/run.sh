#!/usr/bin/env bash
# THE test command of the project: installs the real v11 clients the integration tests drive
# (into tests/clients/, git-ignored) and Chromium for the browser tests, then runs every cargo
# test target.
#
#   bash tests/run.sh [extra cargo test args...]
#
# The extra args go to `cargo test --all-targets`, so they add to it rather than narrow it: to run
# some tests only, give a name filter, e.g. `bash tests/run.sh nonebot`.
#
# Needs: the Rust toolchain, Python 3 with venv + pip (3.11 known good), Node 20 + npm, and
# Debian's apt (as root) for chromium.
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
# `npm ci` of the committed package-lock.json, again only when the lock file changed. Without
# npm the other tests still run and tests/koishi.rs fails saying what is missing.
modules=$clients/node_modules
want=$(sha256sum "$clients/package-lock.json" | cut -d' ' -f1)
stamp=$modules/.package-lock.sha256
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    if command -v npm >/dev/null && command -v node >/dev/null; then
        echo "run.sh: installing $clients/package-lock.json into $modules" >&2
        start=$SECONDS
        (cd "$clients" && npm ci --no-audit --no-fund --silent)
        echo "$want" >"$stamp"
        echo "run.sh: Node clients installed in $((SECONDS - start)) s" >&2
    else
        echo "run.sh: node/npm not found: the Koishi tests (tests/koishi.rs) will fail;" \
            "install Node.js 20 and npm (on Debian/Ubuntu: apt-get install nodejs npm)" >&2
    fi
fi

# --- Chromium for the browser tests (tests/playground.rs) -----------------------------------------
# Debian's package, driven by playwright-core from node_modules (no browser download). Installed
# with apt-get when this runs as root (CI) or with passwordless sudo; otherwise the other tests
# still run and tests/playground.rs fails saying what is missing.
chromium=${ONEBOT_BRIDGE_TEST_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    if [ "$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
    if command -v apt-get >/dev/null && [ "$sudo" != none ]; then
        echo "run.sh: installing Debian's chromium for the browser tests" >&2
        start=$SECONDS
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get install -y -q --no-install-recommends chromium >/dev/null ||
            { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends chromium >/dev/null; } ||
            echo "run.sh: apt-get could not install chromium: tests/playground.rs will fail" >&2
        echo "run.sh: chromium step took $((SECONDS - start)) s" >&2
    else
        echo "run.sh: $chromium not found and cannot install it (needs apt-get as root):" \
            "the browser tests (tests/playground.rs) will fail; apt-get install chromium" >&2
    fi
fi

# --- the tests -----------------------------------------------------------------------------------
exec cargo test --all-targets "$@"
