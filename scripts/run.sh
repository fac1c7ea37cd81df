#!/usr/bin/env bash
# Runs a kmipd development instance on 127.0.0.1:5696: builds the server, creates the
# instance in ./.kmipd-dev on first use (sled store, its own SoftHSM2 token with the master
# key, a development CA with server and client certificates), then serves until Ctrl-C.
#
#   scripts/run.sh                 # instance in ./.kmipd-dev
#   KMIPD_DEV_DIR=/tmp/k scripts/run.sh
#   scripts/run.sh --listen 127.0.0.1:15696   # extra arguments go to `kmipd serve`
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${KMIPD_DEV_DIR:-.kmipd-dev}"

if ! ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so >/dev/null 2>&1 \
    && [ -z "${KMIPD_SOFTHSM2_MODULE:-}" ]; then
    echo "run.sh: SoftHSM2 is missing; installing it (scripts/setup.sh)" >&2
    scripts/setup.sh
fi

cargo build --release -q -p kmipd
bin=target/release/kmipd

if [ ! -f "$dir/kmipd.toml" ]; then
    "$bin" init --dir "$dir"
fi
exec "$bin" serve --config "$dir/kmipd.toml" "$@"
