#!/usr/bin/env bash
# Fuzz the TTLV codec (crates/ttlv), the KMIP XML and JSON readers (crates/proto) and the
# engine's handle_bytes (crates/ops) with cargo-fuzz / libFuzzer. See docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS] [TARGET[=SECONDS]...]
#
#   SECONDS   time per target (default 60)
#   TARGET    fuzz targets to run, in order (default: every target, see TARGETS below);
#             TARGET=SECONDS gives that target its own time
#
# For each target it:
#   1. builds the seeds from the KMIP test vectors (decoded or converted at run time, never
#      committed) into fuzz/target/seeds/{ttlv,xml,json}/ -- read-only input for libFuzzer;
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

TARGETS=(ttlv_roundtrip ttlv_decode frame_header xml_read json_read engine_handle_bytes)

# The seed folder (under fuzz/target/seeds/) of each target.
seeds_of() {
    case $1 in
    xml_read) echo xml ;;
    json_read) echo json ;;
    *) echo ttlv ;;
    esac
}

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

# Seeds: one binary file per real message, decoded from hex now (ttlv); one file per message of
# the OASIS XML test cases and of the encodings document (xml), and each of those converted to
# the JSON encoding (json).
seed_root="$fuzz_dir/target/seeds"
rm -rf "$seed_root"
mkdir -p "$seed_root/ttlv" "$seed_root/xml" "$seed_root/json"
python3 - "$vectors" "$wire" "$pairs" "$seed_root" <<'PY'
import json, pathlib, re, sys
import xml.etree.ElementTree as ET

vectors, wire, pairs, out = map(pathlib.Path, sys.argv[1:])
counts = {"ttlv": 0, "xml": 0, "json": 0}
for path in sorted(wire.glob("*.hex")):
    text = re.sub(r"\s+", "", path.read_text())
    try:
        data = bytes.fromhex(text)
    except ValueError as e:
        sys.exit(f"fuzz.sh: error: {path} is not hex: {e}")
    (out / "ttlv" / f"pykmip-{path.stem}").write_bytes(data)
    counts["ttlv"] += 1
messages = []
for i, pair in enumerate(json.loads(pairs.read_text())["pairs"]):
    label = re.sub(r"[^A-Za-z0-9._-]", "_", pair.get("label", "pair"))
    hex_text = re.sub(r"\s+", "", pair.get("ttlv_hex") or "")
    if hex_text:
        (out / "ttlv" / f"msgenc-{i:03}-{label}").write_bytes(bytes.fromhex(hex_text))
        counts["ttlv"] += 1
    if pair.get("xml"):
        messages.append((f"msgenc-{i:03}-{label}", pair["xml"]))
# One message of each shape (its elements, values aside) of at most 4 KiB: the test cases
# repeat many.
message = re.compile(r"<(RequestMessage|ResponseMessage)>.*?</\1>", re.S)
seen = set()
for path in sorted(vectors.glob("*/*/**/*.xml")):
    text = path.read_text(errors="replace")
    for j, m in enumerate(message.finditer(text)):
        shape = re.sub(r'value="[^"]*"', "", m.group(0))
        if len(m.group(0)) <= 4096 and shape not in seen:
            seen.add(shape)
            messages.append((f"{path.stem}-{j:02}", m.group(0)))

def to_json(e):
    item = {"tag": e.get("tag") if e.tag == "TTLV" else e.tag}
    t = e.get("type")
    if t is None or t == "Structure":
        item["value"] = [to_json(c) for c in e]
        return item
    item["type"] = t
    v = e.get("value", "")
    if t in ("Integer", "LongInteger", "Interval") and re.fullmatch(r"-?[0-9]+", v):
        item["value"] = int(v)
    elif t == "Boolean" and v in ("true", "false"):
        item["value"] = v == "true"
    else:
        item["value"] = v
    return item

for name, text in messages:
    (out / "xml" / name).write_text(text)
    counts["xml"] += 1
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        continue
    (out / "json" / name).write_text(json.dumps(to_json(root), indent=1))
    counts["json"] += 1
for kind, n in counts.items():
    if n == 0:
        sys.exit(f"fuzz.sh: error: no {kind} seeds found in the vectors")
print("fuzz.sh: seeds from the vectors: " + ", ".join(f"{n} {k}" for k, n in counts.items()),
      file=sys.stderr)
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
    # The committed seeds of the target (read-only, like the vector seeds), if it has any.
    own_seeds=""
    [[ -d $fuzz_dir/seeds/$name ]] && own_seeds="$fuzz_dir/seeds/$name"
    say "running $name for ${secs}s, 1 job (log: $log)"
    started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    set +e
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    cargo +nightly fuzz run --release --debug-assertions --jobs 1 "$name" \
        "$corpus" "$seed_root/$(seeds_of "$name")" ${own_seeds:+"$own_seeds"} -- \
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
