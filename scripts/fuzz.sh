#!/usr/bin/env bash
# Fuzz the TTLV codec (crates/ttlv) with cargo-fuzz / libFuzzer. See docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS] [TARGET[=SECONDS]...]
#
#   SECONDS   time per target (default 60)
#   TARGET    fuzz targets to run, in order (default: every target, see TARGETS below);
#             TARGET=SECONDS gives that target its own time
#
# For each target it:
#   1. builds the seeds from the KMIP test vectors (hex decoded at run time, never committed)
#      into fuzz/target/seeds/<target>/ -- read-only input for libFuzzer;
#   2. runs libFuzzer for the given time with one job, writing new inputs to
#      fuzz/corpus/<target>/ (committed);
#   3. minimizes fuzz/corpus/<target>/ with `cargo fuzz cmin`;
#   4. prints the libFuzzer stats (last status line, stat::* lines, corpus sizes).
#
# Environment:
#   KMIPD_VECTORS      directory of the KMIP test vectors (default ../shared/kmip-vectors beside
#                      the repository)
#   CARGO_BUILD_JOBS   compile jobs (set it to 1 on a shared machine)
#   FUZZ_ARGS          extra libFuzzer flags for every run (e.g. "-max_len=8192")
#
# Exit status: 0 if no target found a failure, 1 if one did (its input is in
# fuzz/artifacts/<target>/), 2 on a usage or setup error.
set -euo pipefail

TARGETS=(ttlv_roundtrip ttlv_decode frame_header)

die() {
    echo "fuzz.sh: error: $*" >&2
    exit 2
}
say() { echo "fuzz.sh: $*" >&2; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz_dir="$repo/fuzz"
vectors=${KMIPD_VECTORS:-$repo/../shared/kmip-vectors}

seconds=60
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
elif [[ $# -gt 0 && ($1 == -h || $1 == --help) ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi
[[ $seconds -gt 0 ]] || die "SECONDS must be a positive number of seconds"

# Targets to run, each with its time.
declare -a run_names=() run_secs=()
if [[ $# -eq 0 ]]; then
    set -- "${TARGETS[@]}"
fi
for arg in "$@"; do
    name=${arg%%=*}
    secs=$seconds
    if [[ $arg == *=* ]]; then
        secs=${arg#*=}
        [[ $secs =~ ^[1-9][0-9]*$ ]] || die "bad time in '$arg' (want TARGET=SECONDS)"
    fi
    known=0
    for t in "${TARGETS[@]}"; do [[ $t == "$name" ]] && known=1; done
    [[ $known -eq 1 ]] || die "unknown target '$name' (targets: ${TARGETS[*]})"
    run_names+=("$name")
    run_secs+=("$secs")
done

# Tools.
command -v cargo >/dev/null || die "cargo not found"
command -v python3 >/dev/null || die "python3 not found (it decodes the hex vectors)"
cargo +nightly --version >/dev/null 2>&1 ||
    die "no nightly toolchain (rustup toolchain install nightly)"
cargo +nightly fuzz --version >/dev/null 2>&1 ||
    die "cargo-fuzz not installed (cargo install cargo-fuzz)"

# Vectors.
[[ -d $vectors ]] || die "KMIP test vectors not found at $vectors (set KMIPD_VECTORS)"
wire="$vectors/pykmip-wire"
pairs="$vectors/ttlv/msgenc-v1.0-xml-ttlv-pairs.json"
[[ -d $wire ]] || die "missing $wire"
[[ -f $pairs ]] || die "missing $pairs"

logs="$fuzz_dir/target/fuzz-logs"
mkdir -p "$logs"

# Seeds: one binary file per real message, decoded from hex now.
seed_dir="$fuzz_dir/target/seeds/ttlv"
rm -rf "$seed_dir"
mkdir -p "$seed_dir"
python3 - "$wire" "$pairs" "$seed_dir" <<'PY'
import json, pathlib, re, sys

wire, pairs, out = map(pathlib.Path, sys.argv[1:])
count = 0
for path in sorted(wire.glob("*.hex")):
    text = re.sub(r"\s+", "", path.read_text())
    try:
        data = bytes.fromhex(text)
    except ValueError as e:
        sys.exit(f"fuzz.sh: error: {path} is not hex: {e}")
    (out / f"pykmip-{path.stem}").write_bytes(data)
    count += 1
for i, pair in enumerate(json.loads(pairs.read_text())["pairs"]):
    hex_text = re.sub(r"\s+", "", pair.get("ttlv_hex") or "")
    if not hex_text:
        continue
    label = re.sub(r"[^A-Za-z0-9._-]", "_", pair.get("label", "pair"))
    (out / f"msgenc-{i:03}-{label}").write_bytes(bytes.fromhex(hex_text))
    count += 1
if count == 0:
    sys.exit("fuzz.sh: error: no seeds found in the vectors")
print(f"fuzz.sh: {count} seeds from the vectors", file=sys.stderr)
PY

count_files() { find "$1" -maxdepth 1 -type f | wc -l | tr -d ' '; }
count_bytes() { find "$1" -maxdepth 1 -type f -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }'; }

cd "$fuzz_dir"
say "building ${run_names[*]} (nightly, release, debug assertions)"
for name in "${run_names[@]}"; do
    cargo +nightly fuzz build --release --debug-assertions "$name" ||
        die "build of $name failed"
done

failed=()
declare -a summary=()
for i in "${!run_names[@]}"; do
    name=${run_names[$i]}
    secs=${run_secs[$i]}
    corpus="$fuzz_dir/corpus/$name"
    log="$logs/$name.log"
    mkdir -p "$corpus" "$fuzz_dir/artifacts/$name"
    before_run=$(count_files "$corpus")
    say "running $name for ${secs}s, 1 job (log: $log)"
    started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    set +e
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    cargo +nightly fuzz run --release --debug-assertions --jobs 1 "$name" \
        "$corpus" "$seed_dir" -- \
        -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    set -e
    after_run=$(count_files "$corpus")
    status=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    stats=$(grep -E '^stat::' "$log" || true)
    if [[ $rc -ne 0 ]]; then
        failed+=("$name")
        say "$name FAILED (exit $rc); last lines of $log:"
        tail -n 40 "$log" >&2
        say "the failing input is in fuzz/artifacts/$name/; reproduce with"
        say "  cd fuzz && cargo +nightly fuzz run $name fuzz/artifacts/$name/<file>"
        after_cmin="(not minimized)"
    else
        say "minimizing $name corpus ($after_run files)"
        cargo +nightly fuzz cmin --release --debug-assertions "$name" "$corpus" \
            >"$logs/$name.cmin.log" 2>&1 ||
            die "cmin of $name failed (see $logs/$name.cmin.log)"
        after_cmin=$(count_files "$corpus")
    fi
    summary+=("== $name: started $started, ${secs}s, exit $rc
$status
$stats
corpus: $before_run files before the run, $after_run after it, $after_cmin after cmin ($(count_bytes "$corpus") bytes)")
done

echo
echo "== fuzz.sh summary ($(nproc) cores, $(cargo +nightly fuzz --version))"
for s in "${summary[@]}"; do
    echo "$s"
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "FAILED: ${failed[*]} (inputs in fuzz/artifacts/; copy each to fuzz/regressions/<target>/ once fixed)"
    exit 1
fi
echo "no failures"
