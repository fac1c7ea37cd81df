#!/usr/bin/env bash
# The project's one test command: formatting, lints, generated-code freshness, and every unit,
# integration, property and doc test of the workspace. CI runs exactly this (.ci/run).
#
# The tests read the OASIS KMIP vectors from ../shared/kmip-vectors beside the checkout, or from
# $KMIPD_VECTORS; they fail (never skip) when the vectors are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "installing prerequisites (if missing)"
scripts/setup.sh

# A cold run writes about 5 GB under target/ (debug builds with line tables only, Cargo.toml);
# a full disk shows up as a linker crash (ld: Bus error), so say how much room there is.
step "free disk space for target/: $(df -h --output=avail . | tail -1 | tr -d ' ')"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "generated KMIP tables are up to date"
python3 scripts/gen-spec-tables.py --check

# Includes the admin console's real-browser test (crates/server/tests/console_browser.rs:
# chromium headless through playwright-core, both installed by scripts/setup.sh); its
# screenshots land in target/console-screenshots/.
step "cargo test (unit, integration, property, doc; the console in chromium)"
cargo test --workspace --locked

step "alert rules: promtool check and unit tests (docs/alerts.yml, docs/alerts.test.yml)"
promtool check rules docs/alerts.yml
promtool test rules docs/alerts.test.yml

step "interoperability: PyKMIP 0.11.0 and libmongocrypt against a fresh kmipd (conformance/python)"
scripts/python-env.sh
.venv-interop/bin/pytest conformance/python

step "docs/interoperability.md is the one this run rendered (commit it when this fails)"
python3 conformance/python/interop_doc.py
git diff --exit-code --stat -- docs/interoperability.md

step "all tests passed"
