#!/usr/bin/env bash
# Creates or updates the Python virtual environment of the interoperability suites
# (conformance/python): PyKMIP 0.11.0, pymongocrypt (libmongocrypt bundled in its wheel),
# cryptography, pytest, each at the exact version in conformance/python/requirements.lock.
#
#   scripts/python-env.sh            # venv in ./.venv-interop (or $KMIPD_PY_VENV)
#   .venv-interop/bin/pytest conformance/python
#
# Idempotent and fast when nothing changed: the venv records the hash of the lock file and the
# interpreter version, and pip runs only when either differs. On Debian, `python3 -m venv`
# needs the python3-venv package (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv="${KMIPD_PY_VENV:-.venv-interop}"
lock=conformance/python/requirements.lock
python="${PYTHON:-python3}"

if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "python-env: $python has no venv/ensurepip; install python3-venv (scripts/setup.sh)" >&2
    exit 1
fi

want="$(sha256sum "$lock" | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
stamp="$venv/.kmipd-lock"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

# A venv made by another interpreter version is rebuilt rather than patched.
if [[ -x "$venv/bin/python" ]] && ! cmp -s <("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])') \
    <("$python" -c 'import sys; print(sys.version.split()[0])'); then
    rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
    echo "python-env: creating $venv" >&2
    "$python" -m venv "$venv"
fi
echo "python-env: installing $lock into $venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --timeout 120 \
    --requirement "$lock"
# Anything in the venv that the lock does not name (left over from an older lock) goes.
extra=$("$venv/bin/python" -m pip freeze --exclude-editable \
    | grep -v -i -x -F -f <(grep -v '^#' "$lock") || true)
if [[ -n "$extra" ]]; then
    echo "python-env: removing packages not in the lock: $(echo "$extra" | tr '\n' ' ')" >&2
    echo "$extra" | "$venv/bin/python" -m pip uninstall --quiet -y -r /dev/stdin
fi
"$venv/bin/python" -m pip check >/dev/null
echo "$want" >"$stamp"
