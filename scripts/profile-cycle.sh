#!/usr/bin/env bash
# A/B measurements of kmipd's CPU per request on the cycle workload (Create, Get, Destroy over
# 16 connections), for comparing two builds on a machine that other jobs share
# (docs/performance.md, "CPU per durable request"). Each run starts a fresh `kmipd init`
# instance in a temporary directory under target/profile and removes its store at the end.
#
#   scripts/profile-cycle.sh stat  BIN [SECONDS]   # CPU per request (utime+stime of kmipd over
#                                                  # the run / requests) and, per request, page
#                                                  # faults, context switches, fdatasync and
#                                                  # futex calls (perf stat; adds a little CPU);
#                                                  # kmipd's resident memory at the end
#   scripts/profile-cycle.sh callgrind BIN [CYCLES] # instructions per request of all kmipd
#                                                  # threads (user space), counters zeroed after
#                                                  # 200 warm-up cycles; repeatable whatever the
#                                                  # load. valgrind hides the CPU's SHA
#                                                  # extensions: compare totals without
#                                                  # sha2::sha256::compress256 as well
#   scripts/profile-cycle.sh record BIN [SECONDS]  # perf record -g; prints the data file
#
# BIN is a kmipd binary with kmip-bench beside it (cargo build --release -p kmipd -p
# kmipd-bench; copy both aside for the "before" build). The load average is printed with every
# figure: say it with the figure. PROFILE_STORE="key = value; ..." adds settings to the
# instance's [store] section (e.g. "object_cache_entries = 0"); PROFILE_WORKLOAD (default
# cycle) runs another kmip-bench workload (a request per operation counted as one, except
# cycle's three). PROFILE_PREFILL=N first stores N keys (kmip-bench create over 64 connections,
# kmipd run without a wrapper and stopped again), so that the measurement runs over a store of
# that size, as the cycle row of `scripts/bench.sh` does after its create row.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-}"
kmipd="${2:-}"
if [[ -z "$mode" || -z "$kmipd" || ! -x "$kmipd" ]]; then
    sed -n '2,20p' "$0" >&2
    exit 2
fi
bench="$(dirname "$kmipd")/kmip-bench"
[[ -x "$bench" ]] || { echo "profile: no kmip-bench beside $kmipd" >&2; exit 2; }

mkdir -p target/profile
work=$(mktemp -d "$PWD/target/profile/run-XXXXXX")
kpid=""
cleanup() {
    if [[ -n "$kpid" ]]; then
        kill "$kpid" 2>/dev/null || true
        wait "$kpid" 2>/dev/null || true
    fi
    rm -rf "$work/kmipd/data"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$kmipd" init --dir "$work/kmipd" --listen "127.0.0.1:$port" >/dev/null
if [[ -n "${PROFILE_STORE:-}" ]]; then
    python3 - "$work/kmipd/kmipd.toml" "$PROFILE_STORE" <<'PYEOF'
import sys
path, settings = sys.argv[1], [s.strip() for s in sys.argv[2].split(";") if s.strip()]
text = open(path).read()
assert "[store]\n" in text, "no [store] section in " + path
open(path, "w").write(text.replace("[store]\n", "[store]\n" + "".join(s + "\n" for s in settings), 1))
PYEOF
fi
workload="${PROFILE_WORKLOAD:-cycle}"
per_op=1
[[ "$workload" == cycle ]] && per_op=3
certs="$work/kmipd/certs"
load_args=(--server "127.0.0.1:$port" --ca "$certs/ca.pem" --cert "$certs/client.pem"
    --key "$certs/client.key" --connections 16 --workload "$workload" --json --timeout 120)

serve() { # [wrapper...]: starts kmipd serve and waits until it answers a request
    "$@" "$kmipd" serve --config "$work/kmipd/kmipd.toml" >"$work/kmipd.log" 2>&1 &
    kpid=$!
    local i
    for i in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            break
        fi
        kill -0 "$kpid" 2>/dev/null || { tail -20 "$work/kmipd.log" >&2; exit 1; }
        sleep 0.5
    done
    # kmipd binds its port before it opens the store (building the index of a prefilled store
    # takes seconds of CPU): one answered cycle says the store is open, so no measurement
    # window below holds the opening.
    "$bench" --server "127.0.0.1:$port" --ca "$certs/ca.pem" --cert "$certs/client.pem" \
        --key "$certs/client.key" --connections 1 --workload cycle --json --timeout 600 \
        --requests 1 >"$work/ready.json" 2>&1 ||
        { echo "profile: kmipd did not answer" >&2; tail -20 "$work/kmipd.log" >&2; exit 1; }
}

stop() {
    kill -TERM "$kpid"
    wait "$kpid" || true
    kpid=""
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$kpid/stat"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

if [[ "${PROFILE_PREFILL:-0}" -gt 0 ]]; then
    serve
    "$bench" --server "127.0.0.1:$port" --ca "$certs/ca.pem" --cert "$certs/client.pem" \
        --key "$certs/client.key" --connections 64 --workload create --json --timeout 120 \
        --requests "$PROFILE_PREFILL" >"$work/prefill.json" 2>&1 ||
        { tail -5 "$work/prefill.json" >&2; exit 1; }
    stop
fi

case "$mode" in
    stat)
        secs="${3:-8}"
        serve
        before=$(cpu_ticks)
        perf stat -e page-faults,context-switches,syscalls:sys_enter_fdatasync,syscalls:sys_enter_futex \
            -p "$kpid" -o "$work/stat.txt" &
        spid=$!
        "$bench" "${load_args[@]}" --seconds "$secs" >"$work/bench.json" 2>&1 || true
        after=$(cpu_ticks)
        rss=$(awk '/^VmRSS/ {print $2}' "/proc/$kpid/status")
        kill -INT "$spid"
        wait "$spid" || true
        stop
        python3 - "$work" "$before" "$after" "$(getconf CLK_TCK)" "$(load)" "$per_op" "$rss" <<'PYEOF'
import json, re, sys
work, before, after, tck, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
r = json.loads(open(work + "/bench.json").read().strip().splitlines()[-1])
req = r["ops"] * int(sys.argv[6])
stat = open(work + "/stat.txt").read()
def per(name):
    m = re.search(r"([\d,]+)\s+" + re.escape(name), stat)
    return int(m.group(1).replace(",", "")) / req if m else float("nan")
print(f"{'cycles' if int(sys.argv[6]) == 3 else 'ops'}/s {r['ops_per_sec']:.0f}, errors {r['errors']}; per request: kmipd CPU "
      f"{(after - before) / tck / req * 1e6:.1f} µs, page faults {per('page-faults'):.2f}, "
      f"context switches {per('context-switches'):.2f}, fdatasync "
      f"{per('syscalls:sys_enter_fdatasync'):.3f}, futex {per('syscalls:sys_enter_futex'):.2f}; "
      f"kmipd resident {int(sys.argv[7]) / 1024:.0f} MiB at the end; load average {load}")
PYEOF
        ;;
    callgrind)
        cycles="${3:-1500}"
        # `kmipd serve` re-executes itself (same pid), hence --trace-children.
        serve valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$work/cg.%p"
        "$bench" "${load_args[@]}" --requests 200 >"$work/warm.json" 2>&1 || true
        callgrind_control -z "$kpid" >/dev/null
        "$bench" "${load_args[@]}" --requests "$cycles" >"$work/bench.json" 2>&1 || true
        stop
        out=$(ls -S "$work"/cg.* | head -1)
        callgrind_annotate --auto=no --inclusive=no --threshold=100 "$out" >"$work/annotate.txt" 2>/dev/null
        python3 - "$work/annotate.txt" "$cycles" "$(load)" "$out" "$per_op" <<'PYEOF'
import re, sys
path, cycles, load, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
text = open(path).read()
total = int(re.search(r"([\d,]+) \([\d. ]+%\)\s+PROGRAM TOTALS", text).group(1).replace(",", ""))
sha = sum(int(m.group(1).replace(",", "")) for m in
          re.finditer(r"^\s*([\d,]+) \([\d. ]+%\)\s+\S*sha2::sha256::compress256", text, re.M))
req = cycles * int(sys.argv[5])
print(f"instructions per request: {total / req:,.0f} ({(total - sha) / req:,.0f} without "
      f"SHA-256's compress256); load average {load}; callgrind data: {out}")
PYEOF
        ;;
    record)
        secs="${3:-8}"
        serve
        perf record -e cpu-clock -F 999 -g -p "$kpid" -o "$work/perf.data" 2>/dev/null &
        rpid=$!
        "$bench" "${load_args[@]}" --seconds "$secs" >"$work/bench.json" 2>&1 || true
        kill -INT "$rpid"
        wait "$rpid" || true
        stop
        echo "perf data: $work/perf.data (perf report -i $work/perf.data --no-children); load average $(load)"
        ;;
    *)
        sed -n '2,20p' "$0" >&2
        exit 2
        ;;
esac
