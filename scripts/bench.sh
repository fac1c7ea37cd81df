#!/usr/bin/env bash
# kmipd beside PyKMIP's server: the standard kmip-bench set against both, in the same run, and
# one table with both and the ratio (docs/performance.md, "Side by side").
#
#   scripts/bench.sh                 # build, run everything, print the table (about 4 minutes)
#   BENCH_SECONDS=20 scripts/bench.sh        # longer kmipd runs (default 8 s each)
#   BENCH_PY_SECONDS=10 scripts/bench.sh     # longer PyKMIP runs (default 5 s each)
#   BENCH_ONLY=kmipd scripts/bench.sh        # skip PyKMIP's server
#   BENCH_SOAK=600 scripts/bench.sh          # then two mixed runs of 600 s each against
#                                            # kmipd (writes that keep the store's size, then
#                                            # writes that grow it), sampling its memory
#   BENCH_ROWS='^cycle' scripts/bench.sh     # only the rows whose label matches (an extended
#                                            # regular expression; no memory rows then)
#   BENCH_KMIPD=/path/to/kmipd scripts/bench.sh  # that kmipd binary (and the kmip-bench
#                                            # beside it, if any) instead of building this
#                                            # tree's (A/B runs of two builds, back to back)
#   BENCH_PY_VENV=.venv-interop scripts/bench.sh # an existing PyKMIP venv (default
#                                            # target/bench-venv, made by python-env.sh)
#   scripts/bench.sh --store postgres        # kmipd on PostgreSQL instead: get, create and
#                                            # cycle against one node, then two nodes on the
#                                            # same database (no PyKMIP, no memory rows),
#                                            # with kmipd's and PostgreSQL's CPU per operation
#                                            # and the writing transactions per operation
#   BENCH_PG_STATEMENTS=1 scripts/bench.sh --store postgres  # and pg_stat_statements' counts
#                                            # per row (the extension costs some CPU itself)
#   BENCH_PG_CONF='name = value' scripts/bench.sh --store postgres  # a PostgreSQL setting
#   BENCH_PG_SQL='ALTER TABLE ...' scripts/bench.sh --store postgres  # SQL run once the
#                                            # nodes have made the schema (a table setting)
#
# Each row also prints the server's CPU per request: its utime+stime (/proc/PID/stat, all
# threads) over the row, set-up and connections included, divided by the requests (a cycle is
# three). It depends far less on what else runs on the machine than the rates do.
#
# Both servers are fresh: kmipd from `kmipd init` (sled store, its own SoftHSM2 token, a
# development CA) with the connection caps raised for the idle-connection measurement;
# PyKMIP 0.11.0 from a virtual environment (scripts/python-env.sh into target/bench-venv),
# serving the kmipd instance's ECDSA server certificate and CA (TLS 1.2, client certificates
# required) over its own SQLite database. Everything lives in a temporary directory under
# target/ and every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs="${BENCH_SECONDS:-8}"
py_secs="${BENCH_PY_SECONDS:-5}"
only="${BENCH_ONLY:-}"
soak="${BENCH_SOAK:-0}"
store=sled
while [[ $# -gt 0 ]]; do
    case "$1" in
        --store)
            store="${2:-}"
            shift 2
            ;;
        *)
            echo "usage: scripts/bench.sh [--store sled|postgres]" >&2
            exit 2
            ;;
    esac
done
case "$store" in
    sled | postgres) ;;
    *)
        echo "bench: --store is sled or postgres, not '$store'" >&2
        exit 2
        ;;
esac

if [[ -n "${BENCH_KMIPD:-}" ]]; then
    # A prebuilt kmipd; the generator beside it if there is one.
    kmipd="$BENCH_KMIPD"
    bench="$(dirname "$kmipd")/kmip-bench"
    [[ -x "$bench" ]] || bench=target/release/kmip-bench
else
    echo "bench: building (release)" >&2
    cargo build --release --quiet -p kmipd -p kmipd-bench
    kmipd=target/release/kmipd
    bench=target/release/kmip-bench
fi
rows_re="${BENCH_ROWS:-}"
clk_tck=$(getconf CLK_TCK)

mkdir -p target/bench
work=$(mktemp -d "$PWD/target/bench/run-XXXXXX")
pids=()
pgdir=""
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [[ -n "$pgdir" ]]; then
        pg_as "$pgbin/pg_ctl" -D "$pgdir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
        rm -rf "$pgdir"
    fi
    # The stores, the audit log and the request log reach gigabytes in a soak (one audit
    # record and one log line per request): keep the results and the log's last lines.
    rm -rf "$work/kmipd/data" "$work/kmipd/audit.log" "$work/pykmip/pykmip.db"
    if [[ -f "$work/kmipd.log" ]]; then
        tail -n 2000 "$work/kmipd.log" >"$work/kmipd.log.tail" && rm -f "$work/kmipd.log"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # port, pid, log
    local i
    for i in $(seq 1 150); do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "bench: server exited during start-up; its log:" >&2
            tail -20 "$3" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "bench: nothing listens on port $1 after 30 s" >&2
    exit 1
}

# --- --store postgres ----------------------------------------------------------------------
# A private PostgreSQL (initdb in a directory under /tmp on a free loopback port, fsync and
# synchronous_commit on as in production, as the `postgres` user when run as root, stopped on
# exit), one `kmipd init` instance (certificates, SoftHSM2 token) and two node configurations
# on the same database, each with its own audit log and admin socket. Each workload runs
# against node 1 alone, then against both nodes at once (half the connections each, one
# kmip-bench per node, the figures added up). BENCH_PG_POOL sets the nodes' pool_size.
pg_as() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
# utime+stime of the kmipd nodes 1..N (all threads), in clock ticks.
kmipd_ticks() {
    local n t=0
    for ((n = 0; n < $1; n++)); do
        t=$((t + $(sed 's/.*) //' "/proc/${pids[$n]}/stat" | awk '{print $12 + $13}')))
    done
    echo "$t"
}
# utime+stime of the postmaster, of its live children and of the children it reaped.
pg_ticks() {
    local t c
    t=$(sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13 + $14 + $15}')
    for c in $(cat "/proc/$1/task/$1/children" 2>/dev/null); do
        t=$((t + $(sed 's/.*) //' "/proc/$c/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
    done
    echo "$t"
}
# The next transaction id: the difference counts the transactions that wrote (a read-only
# transaction gets no id), exactly, where pg_stat_database lags by up to seconds per backend.
pg_xacts() {
    psql_kmipd -c "SELECT txid_snapshot_xmax(txid_current_snapshot())"
}
pg_bench() {
    pgbin=$(pg_config --bindir 2>/dev/null || true)
    if [[ ! -x "$pgbin/initdb" ]]; then
        pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    fi
    if [[ ! -x "$pgbin/initdb" ]]; then
        echo "bench: PostgreSQL's initdb not found: run scripts/setup.sh" >&2
        exit 1
    fi
    pgdir=$(mktemp -d /tmp/kmipd-bench-pg-XXXXXX)
    chmod 700 "$pgdir"
    if [[ $(id -u) == 0 ]]; then
        chown postgres: "$pgdir"
    fi
    local pgport
    pgport=$(free_port)
    pg_as "$pgbin/initdb" -D "$pgdir/data" -A trust -U postgres -E UTF8 --locale=C >/dev/null
    pg_as tee -a "$pgdir/data/postgresql.auto.conf" >/dev/null <<PGCONF
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$pgdir'
fsync = on
synchronous_commit = on
max_connections = 300
shared_buffers = 128MB
PGCONF
    if [[ -n "${BENCH_PG_STATEMENTS:-}" ]]; then
        printf "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track_planning = on\n" |
            pg_as tee -a "$pgdir/data/postgresql.auto.conf" >/dev/null
    fi
    if [[ -n "${BENCH_PG_CONF:-}" ]]; then
        echo "$BENCH_PG_CONF" | pg_as tee -a "$pgdir/data/postgresql.auto.conf" >/dev/null
    fi
    pg_as "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 start >/dev/null
    psql_kmipd() { pg_as "$pgbin/psql" -X -q -A -t -h 127.0.0.1 -p "$pgport" -U postgres -d kmipd "$@"; }
    pg_as "$pgbin/psql" -X -q -h 127.0.0.1 -p "$pgport" -U postgres -c "CREATE DATABASE kmipd"
    if [[ -n "${BENCH_PG_STATEMENTS:-}" ]]; then
        psql_kmipd -c "CREATE EXTENSION pg_stat_statements"
    fi
    local postmaster
    postmaster=$(head -1 "$pgdir/data/postmaster.pid")
    local url="postgresql://postgres@127.0.0.1:$pgport/kmipd"
    local pool="${BENCH_PG_POOL:-}"

    "$kmipd" init --dir "$work/kmipd" --listen 127.0.0.1:0 >/dev/null
    local sledconf="$work/kmipd/kmipd.toml"
    if ! grep -q '^backend = "sled"$' "$sledconf"; then
        echo "bench: kmipd init's [store] section changed; update bench.sh" >&2
        exit 1
    fi
    local ports=() n
    for n in 1 2; do
        ports+=("$(free_port)")
        sed -e "s|^backend = \"sled\"\$|backend = \"postgres\"\nurl = \"$url\"${pool:+\npool_size = $pool}|" \
            -e '/^data_dir = "data"$/d' \
            -e "s|^\\[admin\\]\$|[admin]\nsocket = \"admin-$n.sock\"|" "$sledconf" >"$work/kmipd/node$n.toml"
        # The admin socket went into init's own [admin] table when it wrote one.
        if ! grep -q '^\[admin\]$' "$sledconf"; then
            printf '\n[admin]\nsocket = "admin-%s.sock"\n' "$n" >>"$work/kmipd/node$n.toml"
        fi
        cat >>"$work/kmipd/node$n.toml" <<NODECONF

[audit]
path = "audit-$n.log"

[limits]
max_connections = 4096
max_connections_per_identity = 4096
NODECONF
        "$kmipd" serve --config "$work/kmipd/node$n.toml" --listen "127.0.0.1:${ports[$((n - 1))]}" \
            >"$work/kmipd-$n.log" 2>&1 &
        pids+=("$!")
        wait_port "${ports[$((n - 1))]}" "$!" "$work/kmipd-$n.log"
    done
    certs="$work/kmipd/certs"
    tls=(--ca "$certs/ca.pem" --cert "$certs/client.pem" --key "$certs/client.key")
    if [[ -n "${BENCH_PG_SQL:-}" ]]; then
        # SQL run once the nodes have made the schema (a table setting to try, say).
        psql_kmipd -c "$BENCH_PG_SQL" >&2
    fi

    # label | connections (over all nodes) | kmip-bench arguments
    local runs=(
        "get|64|--workload get --keys 64"
        "create (durable)|64|--workload create"
        "create (durable)|16|--workload create"
        "cycle (create+get+destroy)|16|--workload cycle"
    )
    local results="$work/results.tsv" r label conns args nodes i out
    local k0 k1 p0 p1 x0 x1 cpu
    : >"$results"
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    for r in "${runs[@]}"; do
        IFS='|' read -r label conns args <<<"$r"
        if [[ -n "$rows_re" ]] && ! [[ "$label" =~ $rows_re ]]; then
            continue
        fi
        for nodes in 1 2; do
            local bpids=()
            if [[ -n "${BENCH_PG_STATEMENTS:-}" ]]; then
                psql_kmipd -c "SELECT pg_stat_statements_reset()" >/dev/null
            fi
            k0=$(kmipd_ticks "$nodes")
            p0=$(pg_ticks "$postmaster")
            x0=$(pg_xacts)
            for ((i = 0; i < nodes; i++)); do
                out="$work/out-$nodes-$i-$(echo "$label-$conns" | tr -c 'a-zA-Z0-9' _).txt"
                # shellcheck disable=SC2086
                timeout 180 "$bench" --server "127.0.0.1:${ports[$i]}" "${tls[@]}" \
                    --seconds "$secs" --json --connections $((conns / nodes)) $args \
                    >"$out" 2>&1 &
                bpids+=("$!")
            done
            for ((i = 0; i < nodes; i++)); do
                wait "${bpids[$i]}" || true
            done
            k1=$(kmipd_ticks "$nodes")
            p1=$(pg_ticks "$postmaster")
            x1=$(pg_xacts)
            # CPU seconds of the kmipd node(s) and of PostgreSQL, and transactions, over the
            # row: on the first node's line, for the whole row.
            cpu="$(awk -v k=$((k1 - k0)) -v p=$((p1 - p0)) -v hz="$clk_tck" \
                'BEGIN {printf "%.6f\t%.6f", k / hz, p / hz}')"$'\t'$((x1 - x0))
            for ((i = 0; i < nodes; i++)); do
                out="$work/out-$nodes-$i-$(echo "$label-$conns" | tr -c 'a-zA-Z0-9' _).txt"
                printf '%s\t%s\t%s\t%s\t%s\n' "$label" "$conns" "$nodes" "$cpu" "$(tail -1 "$out")" >>"$results"
                cpu=$'0\t0\t0'
                echo "bench: $nodes node(s), $label x$conns, node $((i + 1)): $(grep -v '^{' "$out" | tail -1)" >&2
            done
            if [[ -n "${BENCH_PG_STATEMENTS:-}" ]]; then
                echo "bench: statements, $nodes node(s), $label x$conns:" >&2
                psql_kmipd -F $'\t' -c "SELECT calls, round(total_exec_time::numeric, 1), \
                    round(total_plan_time::numeric, 1), left(regexp_replace(query, '\\s+', ' ', 'g'), 110) \
                    FROM pg_stat_statements ORDER BY calls DESC LIMIT 12" >&2
                echo "bench: kmipd_objects updates (all rows so far): total, HOT" >&2
                psql_kmipd -F $'\t' -c "SELECT pg_sleep(0.6), n_tup_upd, n_tup_hot_upd \
                    FROM pg_stat_user_tables WHERE relname = 'kmipd_objects'" >&2
            fi
        done
    done
    load_after=$(cut -d' ' -f1-3 /proc/loadavg)
    python3 - "$results" "$load_before" "$load_after" "$secs" \
        "$("$pgbin/postgres" --version)" "${pool:-default}" <<'PYEOF'
import json, os, subprocess, sys
results, load_before, load_after, secs, pgver, pool = sys.argv[1:7]
rows, order = {}, []
for line in open(results):
    label, conns, nodes, kcpu, pcpu, xacts, js = line.rstrip("\n").split("\t", 6)
    try:
        r = json.loads(js)
    except ValueError:
        r = {"failed": js[:200]}
    r["kcpu"], r["pcpu"], r["xacts"] = float(kcpu), float(pcpu), int(xacts)
    key = (label, conns)
    rows.setdefault(key, {}).setdefault(nodes, []).append(r)
    if key not in order:
        order.append(key)
model = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True,
              text=True).stdout.splitlines() if l.startswith("Model name")), "?")
print(f"{os.cpu_count()} CPUs ({model}); {pgver}; kmipd pool_size {pool}; {secs} s per row; "
      f"load average before {load_before}, after {load_after}")
print()
print("| workload | conns | 1 node ops/s | p50 ms | p99 ms | 2 nodes ops/s (sum) | p50 ms | p99 ms | errors |")
print("|---|---|---|---|---|---|---|---|---|")
def cell(rs):
    if not rs or any("failed" in r or "ops_per_sec" not in r for r in rs):
        return "failed", "", "", 0
    ops = sum(r["ops_per_sec"] for r in rs)
    p50 = max(r["p50_ms"] for r in rs)
    p99 = max(r["p99_ms"] for r in rs)
    return f"{ops:,.0f}", f"{p50:.2f}", f"{p99:.2f}", sum(r.get("errors", 0) for r in rs)
for key in order:
    one, two = cell(rows[key].get("1")), cell(rows[key].get("2"))
    print(f"| {key[0]} | {key[1]} | {one[0]} | {one[1]} | {one[2]} | {two[0]} | {two[1]} | {two[2]} | {one[3] + two[3]} |")
# CPU per operation (a cycle is one operation of three requests): kmipd's utime+stime (every
# node of the row) and PostgreSQL's (the postmaster, its children and the children it reaped),
# set-up included; transactions that wrote (took a transaction id) per operation.
print()
print("| workload | conns | nodes | kmipd CPU µs/op | PostgreSQL CPU µs/op | write transactions/op |")
print("|---|---|---|---|---|---|")
for key in order:
    for nodes, rs in sorted(rows[key].items()):
        if any("failed" in r or "ops" not in r for r in rs):
            continue
        ops = sum(r["ops"] for r in rs)
        if ops == 0:
            continue
        k, p, x = (sum(r[f] for r in rs) for f in ("kcpu", "pcpu", "xacts"))
        print(f"| {key[0]} | {key[1]} | {nodes} | {k * 1e6 / ops:,.0f} | {p * 1e6 / ops:,.0f} | {x / ops:.2f} |")
for key in order:
    for nodes, rs in rows[key].items():
        for r in rs:
            if "failed" in r:
                print(f"{key[0]} x{key[1]} on {nodes} node(s): failed: {r['failed']}")
            elif r.get("first_error"):
                print(f"{key[0]} x{key[1]} on {nodes} node(s): first error: {r['first_error']}")
PYEOF
    echo
    echo "(logs and raw JSON: $work; PostgreSQL's log is removed with its directory)"
}
if [[ "$store" == postgres ]]; then
    pg_bench
    exit 0
fi

# --- kmipd --------------------------------------------------------------------------------
kport=$(free_port)
"$kmipd" init --dir "$work/kmipd" --listen "127.0.0.1:$kport" >/dev/null
cat >>"$work/kmipd/kmipd.toml" <<EOF

# bench.sh: room for 1,000 idle connections of one identity.
[limits]
max_connections = 4096
max_connections_per_identity = 4096
EOF
"$kmipd" serve --config "$work/kmipd/kmipd.toml" >"$work/kmipd.log" 2>&1 &
kpid=$!
pids+=("$kpid")
wait_port "$kport" "$kpid" "$work/kmipd.log"
certs="$work/kmipd/certs"
tls=(--ca "$certs/ca.pem" --cert "$certs/client.pem" --key "$certs/client.key")

# --- PyKMIP's server ----------------------------------------------------------------------
pport=""
if [[ "$only" != kmipd ]]; then
    venv="${BENCH_PY_VENV:-$PWD/target/bench-venv}"
    if [[ -x scripts/python-env.sh ]]; then
        KMIPD_PY_VENV="$venv" scripts/python-env.sh
    elif [[ ! -x "$venv/bin/pykmip-server" ]]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            PyKMIP==0.11.0 cryptography==50.0.2 SQLAlchemy==2.1.9
    fi
    pport=$(free_port)
    mkdir -p "$work/pykmip/policies"
    cat >"$work/pykmip/server.conf" <<EOF
[server]
hostname=127.0.0.1
port=$pport
certificate_path=$certs/server-ec.pem
key_path=$certs/server-ec.key
ca_path=$certs/ca.pem
auth_suite=TLS1.2
policy_path=$work/pykmip/policies
enable_tls_client_auth=True
logging_level=WARNING
database_path=$work/pykmip/pykmip.db
EOF
    (cd "$work/pykmip" && exec "$venv/bin/pykmip-server" -f "$work/pykmip/server.conf" \
        -l "$work/pykmip/server.log") >"$work/pykmip.out" 2>&1 &
    ppid=$!
    pids+=("$ppid")
    wait_port "$pport" "$ppid" "$work/pykmip.out"
fi

# --- the standard set ---------------------------------------------------------------------
# label | kmip-bench arguments
runs=(
    "get|--workload get --connections 32 --keys 64"
    "get x64 (p99)|--workload get --connections 64 --keys 64"
    "create (durable)|--workload create --connections 64"
    "cycle (create+get+destroy)|--workload cycle --connections 16"
    "get x16 (cycle's ceiling)|--workload get --connections 16 --keys 64"
    "modify (durable)|--workload modify --connections 16 --keys 64"
    "locate by name|--workload locate --connections 16 --keys 64"
    "encrypt AES-GCM 1 KiB|--workload encrypt --connections 16"
    "sign ECDSA P-256|--workload sign --connections 16"
    "reconnect, full handshake|--workload get --keys 8 --connections 8 --reconnect --no-resumption"
    "reconnect, resumed|--workload get --keys 8 --connections 8 --reconnect"
)
results="$work/results.tsv"
: >"$results"
# utime+stime of a process (all its threads), in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
run_one() { # server-label port seconds label args...
    local who=$1 port=$2 s=$3 label=$4
    shift 4
    local out="$work/out-$who-$(echo "$label" | tr -c 'a-zA-Z0-9' _).txt"
    local rc=0 spid=$kpid t0 t1
    [[ "$who" == pykmip ]] && spid=$ppid
    t0=$(cpu_ticks "$spid")
    # shellcheck disable=SC2068
    timeout 180 "$bench" --server "127.0.0.1:$port" "${tls[@]}" --seconds "$s" --json $@ \
        >"$out" 2>&1 || rc=$?
    t1=$(cpu_ticks "$spid")
    local json
    json=$(tail -1 "$out")
    if [[ $rc -ne 0 && $rc -ne 3 ]] || [[ "$json" != \{* ]]; then
        json="{\"failed\": \"exit $rc: $(grep -v '^{' "$out" | tail -1 | tr -d '"\\' | head -c 200)\"}"
    fi
    printf '%s\t%s\t%s\t%s\n' "$who" "$label" "$json" \
        "$(awk -v d=$((t1 - t0)) -v hz="$clk_tck" 'BEGIN {printf "%.6f", d / hz}')" >>"$results"
    echo "bench: $who $label: $(grep -v '^{' "$out" | tail -1)" >&2
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for r in "${runs[@]}"; do
    label=${r%%|*}
    args=${r#*|}
    if [[ -n "$rows_re" ]] && ! [[ "$label" =~ $rows_re ]]; then
        continue
    fi
    run_one kmipd "$kport" "$secs" "$label" $args
    if [[ -n "$pport" ]]; then
        run_one pykmip "$pport" "$py_secs" "$label" $args
    fi
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- memory: resident size with idle connections ------------------------------------------
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
mem="$work/memory.tsv"
: >"$mem"
idle_counts=(100 1000)
[[ -n "$rows_re" ]] && idle_counts=()
for n in "${idle_counts[@]}"; do
    before=$(rss_kb "$kpid")
    "$bench" --server "127.0.0.1:$kport" "${tls[@]}" --workload idle --connections "$n" \
        --seconds 6 --json >"$work/idle-$n.txt" 2>&1 &
    bpid=$!
    pids+=("$bpid")
    # The largest resident size while the connections are open (they connect, send one
    # Discover Versions each, then stay idle for 6 s).
    during=$before
    while kill -0 "$bpid" 2>/dev/null; do
        r=$(rss_kb "$kpid")
        (( r > during )) && during=$r
        sleep 0.5
    done
    wait "$bpid" || true
    sleep 1
    after=$(rss_kb "$kpid")
    printf '%s\t%s\t%s\t%s\n' "$n" "$before" "$during" "$after" >>"$mem"
done

# --- the table ----------------------------------------------------------------------------
python3 - "$results" "$mem" "$load_before" "$load_after" "$secs" "$py_secs" <<'EOF'
import json, sys
results, mem, load_before, load_after, secs, py_secs = sys.argv[1:7]
rows, order = {}, []
for line in open(results):
    who, label, js, cpu = line.rstrip("\n").split("\t", 3)
    r = json.loads(js)
    # Server CPU per request over the row (set-up and connections included).
    if r.get("ops"):
        r["cpu_us_per_req"] = float(cpu) * 1e6 / (r["ops"] * r.get("requests_per_op", 1))
    rows.setdefault(label, {})[who] = r
    if label not in order:
        order.append(label)

def cell(r):
    if r is None:
        return "not run", "", ""
    if "unsupported" in r:
        return "unsupported", "", ""
    if "failed" in r:
        return "failed", "", ""
    ops = r["ops_per_sec"]
    err = f" ({r['errors']} errors)" if r.get("errors") else ""
    res = f", {r['resumed']} resumed" if "resumed" in r and r.get("resumed") else ""
    return f"{ops:,.0f}{err}{res}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"

import os, subprocess
model = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True,
              text=True).stdout.splitlines() if l.startswith("Model name")), "?")
print(f"{os.cpu_count()} CPUs ({model}); kmipd {secs} s and PyKMIP {py_secs} s per row; "
      f"load average before {load_before}, after {load_after}")
print()
print("| workload | conns | kmipd ops/s | p50 ms | p99 ms | PyKMIP ops/s | p50 ms | p99 ms | ratio "
      "| kmipd CPU µs/req | PyKMIP CPU µs/req |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
def cpu(r):
    return f"{r['cpu_us_per_req']:,.1f}" if r and "cpu_us_per_req" in r else ""
for label in order:
    k, p = rows[label].get("kmipd"), rows[label].get("pykmip")
    conns = (k or p or {}).get("connections", "")
    kc, pc = cell(k), cell(p)
    ratio = ""
    if k and p and k.get("ops_per_sec") and p.get("ops_per_sec"):
        ratio = f"{k['ops_per_sec'] / p['ops_per_sec']:,.0f}x"
    print(f"| {label} | {conns} | {kc[0]} | {kc[1]} | {kc[2]} | {pc[0]} | {pc[1]} | {pc[2]} | {ratio} "
          f"| {cpu(k)} | {cpu(p)} |")
# A cycle is three requests, each doing at least a repeat Get's work (TLS, decoding, access
# check, store read, audit record) plus a durable store write: over the same 16 connections
# it cannot go faster than a third of the Get rate.
cyc, g16 = rows.get("cycle (create+get+destroy)", {}), rows.get("get x16 (cycle's ceiling)", {})
k16, pcyc = g16.get("kmipd"), cyc.get("pykmip")
if k16 and k16.get("ops_per_sec") and pcyc and pcyc.get("ops_per_sec"):
    ceiling = k16["ops_per_sec"] / 3
    print()
    print(f"cycle ceiling on this machine: kmipd Get x16 / 3 = {ceiling:,.0f} cycles/s, "
          f"{ceiling / pcyc['ops_per_sec']:,.0f}x PyKMIP's cycle")
for label in order:
    for who, r in rows[label].items():
        if "failed" in r:
            print(f"{who} {label}: {r['failed']}")
        elif "unsupported" in r:
            print(f"{who} {label}: unsupported: {r['unsupported']}")
        elif r.get("first_error"):
            print(f"{who} {label}: first error: {r['first_error']}")
print()
print("kmipd resident memory with idle mutual-TLS connections (VmRSS):")
for line in open(mem):
    n, before, during, after = map(int, line.split())
    print(f"  {n} idle: {before/1024:.1f} MiB before, {during/1024:.1f} MiB with them "
          f"({(during-before)/n:.1f} KiB per connection), {after/1024:.1f} MiB after they closed")
EOF

# --- optional soak: mixed load, resident memory sampled -----------------------------------
# Two mixes of $soak seconds each, one after the other on the same kmipd: first one whose
# writes (Modify Attribute) leave the number of stored objects unchanged, so resident memory
# should stay flat; then one whose writes (cycle: Create, Get, Destroy, which keeps the
# metadata) add an object each, so it grows with the store.
soak_mix() { # label, then "workload connections" specs
    local label=$1 spec w start
    shift
    echo
    echo "Mixed run of $soak s against kmipd, $label ($*), VmRSS every 30 s:"
    local names=()
    for spec in "$@"; do
        set -- $spec
        "$bench" --server "127.0.0.1:$kport" "${tls[@]}" --workload "$1" --connections "$2" \
            --seconds "$soak" --json >"$work/soak-$label-$1.txt" 2>&1 &
        pids+=("$!")
        names+=("$1")
    done
    start=$(date +%s)
    while (( $(date +%s) - start < soak + 5 )); do
        printf '  t=%4ss  %s kB\n' "$(( $(date +%s) - start ))" "$(rss_kb "$kpid")"
        sleep 30
    done
    for w in "${names[@]}"; do
        echo "  $w: $(grep -v '^{' "$work/soak-$label-$w.txt" | tail -1)"
    done
}
if [[ "$soak" -gt 0 ]]; then
    soak_mix steady "modify 8" "get 16" "locate 4"
    soak_mix growing "cycle 8" "get 16" "locate 4"
fi
echo
echo "(logs and raw JSON: $work)"
