#!/usr/bin/env bash
# THE test command of the project: installs the real v11 clients the integration tests drive
# (into tests/clients/, git-ignored), Chromium for the browser tests and redis-server for the
# shared-store tests, then runs every cargo test target.
#
#   bash tests/run.sh [extra cargo test args...]
#
# The extra args go to `cargo test --all-targets`, so they add to it rather than narrow it: to run
# some tests only, give a name filter, e.g. `bash tests/run.sh nonebot`.
#
# Needs: the Rust toolchain, Python 3 with venv + pip (3.11 known good), Node 20 + npm, and
# Debian's apt (as root) for chromium and redis-server.
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

# --- System packages: Chromium for the browser tests, redis-server for the shared store ----------
# Debian's packages: chromium is driven by playwright-core from node_modules (no browser
# download); redis-server is started by the tests themselves on a free loopback port. Installed
# with apt-get when this runs as root (CI) or with passwordless sudo; otherwise the other tests
# still run and the tests that need them fail saying what is missing.
chromium=${ONEBOT_BRIDGE_TEST_CHROMIUM:-/usr/bin/chromium}
missing=()
[ -x "$chromium" ] || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
    if command -v apt-get >/dev/null && [ "$sudo" != none ]; then
        echo "run.sh: installing Debian's ${missing[*]}" >&2
        start=$SECONDS
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
            { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } ||
            echo "run.sh: apt-get could not install ${missing[*]}: tests/playground.rs or the Redis tests will fail" >&2
        echo "run.sh: system packages installed in $((SECONDS - start)) s" >&2
    else
        echo "run.sh: missing ${missing[*]} and cannot install (needs apt-get as root): the browser tests" \
            "(tests/playground.rs) or the Redis tests (tests/redis_store.rs, tests/replicas.rs) will fail;" \
            "apt-get install ${missing[*]}" >&2
    fi
fi

# --- the tests -----------------------------------------------------------------------------------
exec cargo test --all-targets "$@"
