#!/usr/bin/env bash
# RSS soak: `omniledger up` (child processes included) under a steady single-event
# load for DURATION seconds, RSS sampled every 30 s. Loopback only; stops by itself.
#   bash loadtests/soak.sh [DURATION_S=600] [CONNECTIONS=8]
set -euo pipefail
DURATION=${1:-600}; CONNS=${2:-8}
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(dirname "$HERE")
TAG=soak$$; DB=omniledger_$TAG; PORT=$((20000 + RANDOM % 20000))
psql -h 127.0.0.1 -U postgres -q -c "CREATE DATABASE $DB"
export OMNILEDGER_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/$DB
export OMNILEDGER_NATS_URL=nats://127.0.0.1:4222 OMNILEDGER_STREAM=SOAK_$TAG OMNILEDGER_SUBJECT_PREFIX=$TAG
export OMNILEDGER_ADMIN_KEY=soak-admin OMNILEDGER_LOG_LEVEL=WARNING OMNILEDGER_DATA_DIR=$(mktemp -d)
"$REPO/.venv/bin/omniledger" up --port "$PORT" > "/tmp/$TAG.log" 2>&1 &
UP=$!
cleanup() {
  kill -INT $UP 2>/dev/null || true; wait $UP 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
  "$REPO/.venv/bin/python" -c "import asyncio, nats
async def m():
    nc = await nats.connect('nats://127.0.0.1:4222'); await nc.jetstream().delete_stream('SOAK_$TAG'); await nc.close()
asyncio.run(m())" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do curl -sf "localhost:$PORT/healthz" >/dev/null && break; sleep 0.2; done
curl -s -XPOST "localhost:$PORT/v1/sellers" -H "Authorization: Bearer soak-admin" \
  -d "{\"seller_id\":\"bench-$TAG-0\",\"name\":\"Soak\"}" >/dev/null
BENCH_KEY=soak-admin BENCH_PORTS=$PORT wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$HERE/post_events.lua" \
  "http://127.0.0.1:$PORT" -- single "$TAG" 1 1 s > "/tmp/$TAG.wrk" 2>&1 &
WRK=$!
echo "t_s,rss_kb_api,rss_kb_children,head_position"
START=$(date +%s)
while kill -0 $WRK 2>/dev/null; do
  API=$(ps -o rss= -p $UP | tr -d ' ')
  KIDS=$(ps -o rss= --ppid $UP | awk '{s+=$1} END {print s+0}')
  HEAD=$(curl -s "localhost:$PORT/healthz" | sed -E 's/.*"head_position":([0-9]+).*/\1/')
  echo "$(( $(date +%s) - START )),$API,$KIDS,$HEAD"
  sleep 30
done
grep -E "Requests/sec|Latency" "/tmp/$TAG.wrk" | head -3
