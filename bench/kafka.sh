#!/usr/bin/env bash
# flashrent on Kafka against the broker's own speed, in one run:
#   1. POST /api/orders on `serve --kafka` (wrk, saturating)        -> orders/s
#   2. the event topic consumed raw (kafka_raw consume)             -> records/s, average size
#   3. records the size of one command produced raw, idempotent,
#      acks=all (one per command the topic holds)                    -> records/s
#   4. a fresh instance rebuilding its read models from the topic   -> records/s
# and prints the two ratios of issue 3 (targets: POST >= 50% of raw produce, catch-up >= 60%
# of raw consume).
#
#   bench/kafka.sh                         # starts its own broker (kafka/broker.sh) on port 19800
#   BENCH_ORDERS_SECONDS=30 bench/kafka.sh
set -euo pipefail

USERS=${BENCH_USERS:-2000}
CONNS=${BENCH_CONNS:-16}
THREADS=${BENCH_THREADS:-2}
ORDERS_SECONDS=${BENCH_ORDERS_SECONDS:-20}
# A broker of its own (fresh data, another port), so runs compare and other work is untouched.
KAFKA_PORT=${BENCH_KAFKA_PORT:-19800}
BROKERS=127.0.0.1:$KAFKA_PORT

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release/flashrent
RAW=$CARGO_TARGET_DIR/release/examples/kafka_raw
WORK=$(mktemp -d /tmp/flashrent-kbench.XXXXXX)
PREFIX="bench-$(date +%s)."
PIDS=()
export KAFKA_PORT KAFKA_DIR=$WORK/broker
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  "$ROOT/kafka/broker.sh" stop || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '\n=== %s\n' "$*"; }

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
"$ROOT/kafka/broker.sh" start
log "building release binaries"
(cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example kafka_raw)

export FLASHRENT_ADMIN_TOKEN=bench FLASHRENT_KAFKA_BROKERS=$BROKERS FLASHRENT_KAFKA_TOPIC_PREFIX=$PREFIX
# librdkafka settings for the serve runs (e.g. BENCH_KAFKA_CONFIG=linger.ms=5).
if [[ -n ${BENCH_KAFKA_CONFIG:-} ]]; then export FLASHRENT_KAFKA_CONFIG=$BENCH_KAFKA_CONFIG; fi

start_server() { # data dir, log name, [seconds to wait for it] -> sets URL
  RUST_LOG=${RUST_LOG:-warn,flashrent::startup=info} "$BIN" serve --listen 127.0.0.1:0 --data-dir "$1" \
    >"$WORK/$2.out" 2>"$WORK/$2.err" &
  PIDS+=($!)
  local port=""
  for _ in $(seq $((${3:-60} * 10))); do
    port=$(sed -n 's#^flashrent listening on http://127.0.0.1:\([0-9]*\)$#\1#p' "$WORK/$2.out")
    [[ -n $port ]] && break
    sleep 0.1
  done
  [[ -n $port ]] || { cat "$WORK/$2.err"; exit 1; }
  URL=http://127.0.0.1:$port
}

log "1. POST /api/orders on Kafka ($CONNS connections, $ORDERS_SECONDS s)"
start_server "$WORK/a" a
seq 1 "$USERS" | xargs -P 16 -I{} curl -s -o /dev/null -X POST "$URL/api/admin/users/{}/credit" \
  -H 'Authorization: Bearer bench' -H 'Content-Type: application/json' \
  -d '{"amount_trx": 1000000, "reference": "bench-{}"}'
BENCH_USERS=$USERS wrk -t"$THREADS" -c"$CONNS" -d"${ORDERS_SECONDS}s" --latency \
  -s "$HERE/orders.lua" "$URL/api/orders" | tee "$WORK/wrk.txt"
POST_RATE=$(awk '/^Requests\/sec:/{print $2}' "$WORK/wrk.txt")
non2xx=$(awk '/Non-2xx/{print $NF}' "$WORK/wrk.txt"); echo "non-2xx responses: ${non2xx:-0}"
kill -TERM "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true

log "2. the event topic consumed raw"
"$RAW" consume "$BROKERS" "${PREFIX}events" | tee "$WORK/consume.txt"
CONSUME_RATE=$(awk '{print $2}' "$WORK/consume.txt")
COMMANDS=$(sed -n 's/.* \([0-9]*\) commands,.*/\1/p' "$WORK/consume.txt")
SIZE=$(sed -n 's/.* \([0-9]*\) B per command.*/\1/p' "$WORK/consume.txt")

# The yardstick is the client's unit: a record per command, of one command's size. (The
# server packs the commands decided together into one record; comparing with records of
# that size would flatter it.)
log "3. $COMMANDS records of $SIZE B (one command each) produced raw (idempotent, acks=all)"
"$RAW" produce "$BROKERS" "${PREFIX}raw" "${FLASHRENT_PARTITIONS:-8}" "$COMMANDS" "$SIZE" | tee "$WORK/produce.txt"
PRODUCE_RATE=$(awk '{print $2}' "$WORK/produce.txt")

log "4. a fresh instance catching up from the topic"
# It listens once its read models have caught up, which takes as long as Tansu takes to hand
# the topic out (the raw consume above).
start_server "$WORK/b" b 900
CATCHUP=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/b.err" | sed -n 's/.*read models caught up.* records=\([0-9]*\) elapsed_ms=\([0-9]*\).*/\1 \2/p' | head -1)
read -r CAUGHT MS <<<"$CATCHUP"
CATCHUP_RATE=$(awk -v n="$CAUGHT" -v ms="$MS" 'BEGIN{printf "%.0f", n / (ms / 1000)}')
echo "caught up $CAUGHT records in $MS ms: $CATCHUP_RATE records/s"

log "ratios"
awk -v p="$POST_RATE" -v r="$PRODUCE_RATE" -v c="$CATCHUP_RATE" -v k="$CONSUME_RATE" 'BEGIN {
  printf "POST /api/orders   %8.0f orders/s  / raw produce %8.0f records/s = %5.1f%%  (target >= 50%%)\n", p, r, 100 * p / r
  printf "projector catch-up %8.0f records/s / raw consume %8.0f records/s = %5.1f%%  (target >= 60%%)\n", c, k, 100 * c / k
}'
