#!/usr/bin/env bash
# Measures a release build of the hub the way BENCHMARKS.md reports it:
#   1. burn-down and steady state against a hub on a fresh data folder;
#   2. capacity (a large backlog, many busy agents) against a second fresh hub, then a restart of
#      that hub on its full data folder, timed until it serves /health again.
# Everything runs on loopback and stops by itself. Results land in target/bench/ (JSON + logs).
#
# Knobs (environment): AGENTS, TASKS, RATE, DURATION, CAPACITY_TASKS, CAPACITY_AGENTS,
# SKIP_CAPACITY=1 to run only step 1.
set -euo pipefail
cd "$(dirname "$0")/.."

AGENTS=${AGENTS:-100}
TASKS=${TASKS:-100000}
RATE=${RATE:-1000}
DURATION=${DURATION:-10}
CAPACITY_TASKS=${CAPACITY_TASKS:-1000000}
CAPACITY_AGENTS=${CAPACITY_AGENTS:-10000}
OUT=target/bench
BIN=target/release/switchyard
TOKEN="bench-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d " \n")"
DATA_ROOT=$(mktemp -d /tmp/switchyard-bench-XXXXXX)
HUB_PID=

mkdir -p "$OUT"
# 10,000 agents need 10,000 sockets on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cleanup() {
    if [ -n "$HUB_PID" ] && kill -0 "$HUB_PID" 2>/dev/null; then
        kill -TERM "$HUB_PID" 2>/dev/null || true
        wait "$HUB_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA_ROOT"
}
trap cleanup EXIT

cargo build --release -p switchyard

now() { date +%s.%N; }

# start_hub DATA_DIR LOG_NAME: starts the hub, waits for its "listening" line, sets HUB_PID and
# HUB_URL.
start_hub() {
    local data=$1 log=$2
    : > "$OUT/$log.out"
    SWITCHYARD_ADMIN_TOKEN=$TOKEN "$BIN" serve --listen 127.0.0.1:0 --data-dir "$data" \
        > "$OUT/$log.out" 2> "$OUT/$log.err" &
    HUB_PID=$!
    for _ in $(seq 1 3000); do
        if grep -q '^switchyard listening on ' "$OUT/$log.out"; then
            HUB_URL="http://$(sed -n 's/^switchyard listening on //p' "$OUT/$log.out")"
            return 0
        fi
        kill -0 "$HUB_PID" 2>/dev/null || { cat "$OUT/$log.err" >&2; return 1; }
        sleep 0.01
    done
    echo "the hub did not start within 30 s" >&2
    return 1
}

stop_hub() {
    kill -TERM "$HUB_PID"
    wait "$HUB_PID" || true
    HUB_PID=
}

echo "== burn-down and steady ($TASKS tasks, $AGENTS agents; $RATE/s for $DURATION s)"
start_hub "$DATA_ROOT/load" hub-load
"$BIN" bench --hub "$HUB_URL" --token "$TOKEN" --hub-pid "$HUB_PID" \
    --scenarios burn-down,steady --agents "$AGENTS" --tasks "$TASKS" \
    --rate "$RATE" --duration "$DURATION" --timeout 300 --json "$OUT/load.json"
stop_hub

if [ "${SKIP_CAPACITY:-0}" = 1 ]; then
    exit 0
fi

echo "== capacity ($CAPACITY_TASKS tasks, $CAPACITY_AGENTS agents)"
start_hub "$DATA_ROOT/capacity" hub-capacity
"$BIN" bench --hub "$HUB_URL" --token "$TOKEN" --hub-pid "$HUB_PID" \
    --scenarios capacity --capacity-tasks "$CAPACITY_TASKS" \
    --capacity-agents "$CAPACITY_AGENTS" --timeout 600 --json "$OUT/capacity.json"
stop_hub

echo "== restart on the capacity data folder"
started=$(now)
start_hub "$DATA_ROOT/capacity" hub-restart
listening=$(now)
until curl -sf "$HUB_URL/health" > /dev/null; do sleep 0.01; done
serving=$(now)
status_kib() { awk -v key="$1:" '$1 == key {print $2}' "/proc/$HUB_PID/status"; }
rss_kib=$(status_kib VmRSS)
hwm_kib=$(status_kib VmHWM)
anon_kib=$(status_kib RssAnon)
file_kib=$(status_kib RssFile)
stop_hub
python3 - "$started" "$listening" "$serving" "$rss_kib" "$hwm_kib" "$anon_kib" "$file_kib" \
    "$OUT/restart.json" <<'EOF'
import json, sys
started, listening, serving = map(float, sys.argv[1:4])
rss, hwm, anon, file = (int(v) for v in sys.argv[4:8])
report = {
    "listening_s": round(listening - started, 3),
    "serving_s": round(serving - started, 3),
    "rss_mib_after_restart": round(rss / 1024, 1),
    "rss_anon_mib_after_restart": round(anon / 1024, 1),
    "rss_file_mib_after_restart": round(file / 1024, 1),
    "peak_rss_mib_during_restart": round(hwm / 1024, 1),
}
print(json.dumps(report, indent=2))
open(sys.argv[8], "w").write(json.dumps(report, indent=2) + "\n")
EOF
