#!/usr/bin/env bash
# Installs what the test command needs on a fresh Debian machine, and nothing that is already
# there. Idempotent; safe to run every time.
set -euo pipefail

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
# The Python interoperability suites (conformance/python) create a virtual environment.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
# The engine's cryptography links OpenSSL 3 (docs/crypto.md says why).
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# `openssl s_client` is the legacy-suite client of crates/server/tests/profile_suites.rs.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
pkg-config --exists openssl 2>/dev/null || need_apt+=(libssl-dev)
# SoftHSM2 is the development and test HSM that holds the master key (crates/hsm); its tests
# fail, never skip, without it.
[[ -e /usr/lib/softhsm/libsofthsm2.so ]] || need_apt+=(softhsm2)
# PostgreSQL's server binaries (initdb, pg_ctl, postgres): the PostgreSQL store tests start a
# private cluster of their own (crates/test-support/src/pg.rs) and fail, never skip, without
# them. Debian keeps them in /usr/lib/postgresql/<version>/bin, off PATH.
pg_found=0
if command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir 2>/dev/null)/initdb" ]]; then
    pg_found=1
fi
for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" ]] && pg_found=1
done
((pg_found)) || need_apt+=(postgresql)
# promtool checks and unit-tests the alert rules (docs/alerts.yml, docs/alerts.test.yml).
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# The admin console's browser test (crates/server/tests/console_browser.rs) drives Debian's
# chromium headless through playwright-core on Node.js; it fails, never skips, without them.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if ((${#need_apt[@]})); then
    echo "setup: installing ${need_apt[*]} with apt-get" >&2
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need_apt[@]}"
fi

# playwright-core, pinned by its package-lock.json (no browser download: it drives the system
# chromium). Installed again only when the lock file changed (a copy of it is kept as a stamp).
browser_test=crates/server/tests/console-browser
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! cmp -s "$repo_root/$browser_test/package-lock.json" \
    "$repo_root/$browser_test/node_modules/.kmipd-lock-stamp" 2>/dev/null; then
    echo "setup: npm ci in $browser_test (playwright-core for the console browser test)" >&2
    (cd "$repo_root/$browser_test" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error &&
        cp package-lock.json node_modules/.kmipd-lock-stamp)
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found. Install Rust with rustup (https://rustup.rs), then re-run." >&2
    exit 1
fi

# rustfmt and clippy are rustup components; the test command runs both.
if command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
            echo "setup: adding rustup component ${component}" >&2
            rustup component add "${component}"
        fi
    done
fi
cargo fmt --version >/dev/null
cargo clippy --version >/dev/null
