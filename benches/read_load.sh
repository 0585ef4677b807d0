#!/usr/bin/env bash
# Storefront read throughput with N `mall serve` nodes on one PostgreSQL, measured with wrk from
# separate processes: ranked, personalized district pages
# (`GET /api/districts/toys/products?shopper=sK&limit=20`, K over 500 shoppers with interests).
#
#   benches/read_load.sh [NODES=1] [SECONDS=20] [CONNECTIONS=64]
#
# Needs wrk and PostgreSQL on 127.0.0.1:5432 (user postgres); uses (and drops) the database
# mall_read_load. Prints each node's wrk summary and the sum.
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${1:-1}
SECS=${2:-20}
CONNS=${3:-64}
DB=mall_read_load
URL="postgres://postgres@127.0.0.1:5432/$DB"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

[ -n "${NO_BUILD:-}" ] || cargo build --release -q --bin mall
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
export MALL_ADMIN_TOKEN=admin MALL_INGEST_TOKEN=ingest MALL_READ_RATE=0 MALL_LOG=warn
for i in $(seq 0 $((NODES - 1))); do
    port=$((9100 + i))
    ./target/release/mall --store postgres --database-url "$URL" --data-dir "$WORK/node$i" \
        serve --bind "127.0.0.1:$port" >"$WORK/node$i.log" 2>&1 &
    PIDS+=($!)
done
for i in $(seq 0 $((NODES - 1))); do
    port=$((9100 + i))
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
done
M=http://127.0.0.1:9100
A='Authorization: Bearer admin'
curl -sf -o /dev/null -H "$A" $M/api/districts \
    -d '{"slug":"toys","name":"Toy Town","personality":{"tone":"warm","style":"short sentences","audience":"parents"}}'
python3 - "$WORK" <<'EOF'
import json, sys, uuid, datetime, random
work = sys.argv[1]
random.seed(7)
tags = ["wood", "puzzle", "outdoor", "baby", "music", "craft", "book", "game"]
with open(f"{work}/products.jsonl", "w") as f:
    for i in range(100):
        f.write(json.dumps({"product_id": f"p{i}", "district": "toys", "title": f"Wooden toy {i}",
            "description": f"A toy of oiled beech, number {i}, made to last.", "price": f"{10 + i % 40}.50",
            "currency": "EUR", "tags": [tags[i % 8], tags[(i * 3) % 8]], "attributes": {"material": "beech"},
            "stock": 50}) + "\n")
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
signals = []
for k in range(5000):
    s = f"s{k % 500}"
    p = f"p{random.randrange(100)}"
    signals.append({"type": "product_viewed", "id": str(uuid.uuid4()), "shopper_id": s, "session_id": s,
                    "at": now, "product_id": p, "dwell_ms": 3000})
    if k % 4 == 0:
        signals.append({"type": "added_to_cart", "id": str(uuid.uuid4()), "shopper_id": s, "session_id": s,
                        "at": now, "product_id": p, "quantity": 1})
json.dump({"signals": signals}, open(f"{work}/signals.json", "w"))
EOF
while read -r p; do curl -sf -o /dev/null -H "$A" $M/api/products -d "$p"; done <"$WORK/products.jsonl"
at=$(curl -sf -H 'Authorization: Bearer ingest' $M/api/signals -d @"$WORK/signals.json" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["position"])')
# Every node has read up to the last signal before the clock starts.
for i in $(seq 0 $((NODES - 1))); do
    curl -sf -o /dev/null --max-time 60 \
        "http://127.0.0.1:$((9100 + i))/api/districts/toys/products?shopper=s1&limit=20&min_position=${at:-0}"
done
cat >"$WORK/pages.lua" <<'EOF'
local n = 0
request = function()
    n = n + 1
    return wrk.format("GET", "/api/districts/toys/products?limit=20&shopper=s" .. (n * 7919 % 500))
end
EOF
for i in $(seq 0 $((NODES - 1))); do
    wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/pages.lua" "http://127.0.0.1:$((9100 + i))" \
        >"$WORK/wrk$i.txt" &
done
wait -n 2>/dev/null || true
while pgrep -x wrk >/dev/null; do sleep 0.5; done
total=0
for i in $(seq 0 $((NODES - 1))); do
    echo "== node $i (port $((9100 + i)))"
    grep -E "Requests/sec|Latency |  50%|  99%|Non-2xx|Socket errors" "$WORK/wrk$i.txt"
    total=$(awk -v t="$total" '/Requests\/sec/{print t + $2}' "$WORK/wrk$i.txt")
done
echo "== $NODES node(s), $CONNS connections each: $total requests/s in all"
