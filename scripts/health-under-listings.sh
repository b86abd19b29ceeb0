#!/usr/bin/env bash
# GET /health latency and the hub's peak RSS while four clients list the largest tasks the hub
# accepts, over and over (issue 11, item 1). Usage:
#   scripts/health-under-listings.sh [BINARY] [SECONDS]
# BINARY defaults to target/release/switchyard; SECONDS (of listing) to 10.
set -euo pipefail
BIN=${1:-target/release/switchyard}
SECONDS_OF_LOAD=${2:-10}
TOKEN=health-probe-admin-token-0123456789abcdef
DATA=$(mktemp -d /tmp/health-probe-XXXX)
OUT=$DATA/hub.out
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT

SWITCHYARD_ADMIN_TOKEN=$TOKEN "$BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA/data" \
  > "$OUT" 2> "$DATA/hub.err" &
PID=$!
for _ in $(seq 1 3000); do grep -q '^switchyard listening on ' "$OUT" && break; sleep 0.01; done
URL="http://$(sed -n 's/^switchyard listening on //p' "$OUT")"

# Ten tasks just under the default task limit (256 KiB of description).
python3 -c 'import json; print(json.dumps({"description": "x" * (256 * 1024 - 16)}))' > "$DATA/task.json"
for _ in $(seq 1 10); do
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" --data-binary @"$DATA/task.json" "$URL/api/tasks"
done
# One over it, to show the answer.
python3 -c 'import json; print(json.dumps({"description": "x" * (20 * 1024 * 1024)}))' > "$DATA/big.json"
echo "a 20 MB description: $(curl -s -H "Authorization: Bearer $TOKEN" --data-binary @"$DATA/big.json" \
  -w ' HTTP %{http_code}' "$URL/api/tasks")"

END=$(( $(date +%s) + SECONDS_OF_LOAD ))
for _ in 1 2 3 4; do
  ( while [ "$(date +%s)" -lt $END ]; do
      curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "$URL/api/tasks?limit=10"
    done ) &
done
: > "$DATA/health.txt"
while [ "$(date +%s)" -lt $END ]; do
  curl -s -o /dev/null -w '%{time_total}\n' "$URL/health" >> "$DATA/health.txt"
  sleep 0.05
done
wait $(jobs -p | grep -v "^$PID$") 2>/dev/null || true
sort -n "$DATA/health.txt" | awk '{ v[NR] = $1 } END {
  printf "GET /health under listings: %d probes, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
    NR, v[int(NR * 0.5) + 1] * 1000, v[int(NR * 0.99) + 1] * 1000, v[NR] * 1000 }'
echo "hub peak RSS: $(awk '/VmHWM/ { printf "%.0f MiB", $2 / 1024 }' /proc/$PID/status)"
