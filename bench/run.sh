#!/usr/bin/env bash
# Load benchmark of `flashrent serve` (simulated chain, embedded log), driven by wrk.
#
#   bench/run.sh                               # default run, a few minutes
#   BENCH_INTAKE_SECONDS=0 bench/run.sh        # without the intake-alone runs (section 8)
#   BENCH_ORDERS_SECONDS=150 bench/run.sh      # long POST run, for the memory target
#                                              # (RSS < 300 MiB through a million orders,
#                                              # BENCH_MEMORY_ORDERS; ~10k orders/s here)
#
# Everything talks to 127.0.0.1 only. The server gets a fresh temp data dir, which
# the EXIT trap removes together with the server process.
set -euo pipefail

USERS=${BENCH_USERS:-2000}                  # distinct user ids the orders are spread over
CREDIT_TRX=${BENCH_CREDIT_TRX:-1000000}     # per user; 5.85 TRX/order => ~170k orders each
CONNS=${BENCH_CONNS:-64}
THREADS=${BENCH_THREADS:-2}
ORDERS_SECONDS=${BENCH_ORDERS_SECONDS:-20}  # saturating POST /api/orders run
PACED_RATES=${BENCH_PACED_RATES:-"5000 1000"}  # orders/s of the paced latency runs
PACED_SECONDS=${BENCH_PACED_SECONDS:-20}
GET_IDS=${BENCH_GET_IDS:-1000}              # orders created with curl for the GET run
GET_SECONDS=${BENCH_GET_SECONDS:-20}
INTAKE_SECONDS=${BENCH_INTAKE_SECONDS:-20}  # POST runs of a second server whose saga starts 1 order/s (0: skipped)
MEMORY_ORDERS=${BENCH_MEMORY_ORDERS:-1000000}  # the memory target's run length, in orders
FRESH_PACED=${BENCH_FRESH_PACED:-1}         # the first paced rate again on a fresh server, saga at full speed (0: skipped)
PRICE_SUN=5850000                           # 65000 energy x 1h at 90 sun/energy

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release/flashrent

WORK=$(mktemp -d /tmp/flashrent-bench.XXXXXX)
SERVER_PID=""
SAMPLER_PID=""
HELLO_PID=""
# Stops the server (graceful first, SIGKILL after 15 s).
stop_server() {
  [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null || return 0
  kill -TERM "$SERVER_PID"
  for _ in $(seq 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
cleanup() {
  [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null || true
  [[ -n $HELLO_PID ]] && kill "$HELLO_PID" 2>/dev/null || true
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '\n=== %s\n' "$*"; }

# --- 1. tools, binary, server ------------------------------------------------
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk
fi
log "building release binary into $CARGO_TARGET_DIR"
(cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example actix_hello)

export FLASHRENT_ADMIN_TOKEN=bench
# Prints the URL that process PID writes to OUT (picked out by the sed script SCRIPT), waiting
# up to SECONDS; fails the run, showing ERR, if the process ends or never writes it.
listening_url() {
  local pid=$1 out=$2 script=$3 seconds=$4 err=${5:-/dev/null} url=""
  for _ in $(seq $((seconds * 10))); do
    url=$(sed -n "$script" "$out")
    [[ -n $url ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n $url ]] || { echo "$out: no listening address" >&2; cat "$err" >&2; exit 1; }
  echo "$url"
}

# Starts `serve` on a fresh data dir DIR with any extra flags; sets SERVER_PID and URL.
start_server() {
  local dir=$1; shift
  # RUST_LOG=warn: the info log is not the thing being measured.
  RUST_LOG=${RUST_LOG:-warn} "$BIN" serve --listen 127.0.0.1:0 --data-dir "$dir/data" "$@" \
    >"$dir/server.out" 2>"$dir/server.err" &
  SERVER_PID=$!
  URL=$(listening_url "$SERVER_PID" "$dir/server.out" \
    's#^flashrent listening on \(http://127.0.0.1:[0-9]*\)$#\1#p' 30 "$dir/server.err")
  echo "server pid $SERVER_PID at $URL, data dir $dir/data"
}

# Credits every user with CREDIT_TRX, 16 requests at a time; fails the run on any refusal.
credit_users() {
  log "crediting $USERS users with $CREDIT_TRX TRX each (curl, 16 in parallel)"
  local start codes=$1/credit.codes
  start=$(date +%s%N)
  seq 1 "$USERS" | xargs -P 16 -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 \
    -X POST "$URL/api/admin/users/{}/credit" -H 'Authorization: Bearer bench' \
    -H 'Content-Type: application/json' \
    -d "{\"amount_trx\": $CREDIT_TRX, \"reference\": \"bench-{}\"}" >"$codes"
  echo "credit HTTP status (count code): $(sort "$codes" | uniq -c | xargs)" \
    "in $(( ($(date +%s%N) - start) / 1000000 )) ms"
  [[ $(grep -cv '^201$' "$codes") == 0 ]] || { echo "crediting failed"; exit 1; }
}

# POST /api/orders with wrk for SECONDS, output teed to OUT; at RATE orders/s, or saturating.
post_orders() {
  local seconds=$1 out=$2 rate=${3:-0}
  BENCH_RATE=$rate wrk -t"$THREADS" -c"$CONNS" -d"${seconds}s" --timeout 10s --latency \
    -s "$HERE/orders.lua" "$URL" | tee "$out"
}

start_server "$WORK"

# Orders the server at URL counts, of STATUS or all of them (its metrics, by status).
orders_counted() {
  curl -s --max-time 2 "$1/metrics" \
    | awk -v s="${2:-}" '$1 ~ /^flashrent_orders\{status=/ && (s == "" || index($1, "\"" s "\"")) {n += $2} END {print n + 0}'
}

# Resident memory and orders taken every 2 s, to see growth over the run, not only the peak.
# Bounded: stops with the server, or after 2 h.
( for _ in $(seq 3600); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    echo "$(date +%s) $(awk '/^VmRSS/{print $2}' /proc/"$SERVER_PID"/status 2>/dev/null)" \
      "$(orders_counted "$URL")" \
      >>"$WORK/rss.log"
    sleep 2
  done ) &
SAMPLER_PID=$!

# --- 2. credit the users -------------------------------------------------------
credit_users "$WORK"

# --- 3. GET /api/orders/{id} on a quiet server, against a route that does nothing --------
log "creating $GET_IDS orders with curl for the GET run"
# One printf per response: parallel curls writing straight to the pipe interleave.
seq 1 "$GET_IDS" | xargs -P 8 -I{} sh -c 'printf "%s\n" "$(curl -s --max-time 10 \
    -X POST "$0/api/orders" -H "Content-Type: application/json" \
    -d "{\"user_id\":\"$(( {} % $1 + 1 ))\",\"energy_amount\":65000,\"duration\":\"1h\",\"receive_address\":\"TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2\",\"cost_trx\":5.85}")"' \
  "$URL" "$USERS" >"$WORK/created.json"
grep -o '"order_id":"[^"]*"' "$WORK/created.json" | cut -d'"' -f4 >"$WORK/ids.txt" || true
echo "collected $(wc -l <"$WORK/ids.txt") order ids of $GET_IDS requests"
[[ $(wc -l <"$WORK/ids.txt") -gt 0 ]] || { echo "no order ids"; exit 1; }

# The saga finishes these orders first, so the GET run measures reads alone.
for _ in $(seq 120); do
  in_flight=$(curl -s "$URL/metrics" | awk '/^(flashrent_)?saga_in_flight /{print $2}')
  [[ $in_flight == 0 ]] && break
  sleep 0.5
done
echo "saga orders in flight before the quiet GET run: $in_flight"
log "GET /api/orders/{id}, quiet server: ${GET_SECONDS}s, $CONNS connections, $THREADS threads"
BENCH_IDS_FILE=$WORK/ids.txt wrk -t"$THREADS" -c"$CONNS" -d"${GET_SECONDS}s" --timeout 10s \
  --latency -s "$HERE/get_orders.lua" "$URL" | tee "$WORK/get-quiet.txt"
# The ceiling of this server on this machine: a route with no work behind it (the same
# middleware, no store read, a 15-byte body), measured in the same run.
log "GET /healthz, quiet server: ${GET_SECONDS}s, $CONNS connections, $THREADS threads"
wrk -t"$THREADS" -c"$CONNS" -d"${GET_SECONDS}s" --timeout 10s --latency "$URL/healthz" \
  | tee "$WORK/healthz.txt"
# The machine's ceiling for any actix-web server: a plain hello-world (no middleware, no
# state), which issue 2 states its GET target against. Measured now, on the same cores.
log "GET / of a plain actix-web hello-world (bench/actix_hello.rs): ${GET_SECONDS}s, $CONNS connections"
"$CARGO_TARGET_DIR/release/examples/actix_hello" >"$WORK/hello.out" &
HELLO_PID=$!
HELLO_URL=$(listening_url "$HELLO_PID" "$WORK/hello.out" 's#^listening on \(http://.*\)$#\1#p' 10)
wrk -t"$THREADS" -c"$CONNS" -d"${GET_SECONDS}s" --timeout 10s --latency "$HELLO_URL/" \
  | tee "$WORK/hello.txt"
kill "$HELLO_PID"; wait "$HELLO_PID" 2>/dev/null || true
HELLO_PID=""

# --- 4. POST /api/orders ----------------------------------------------------------
export BENCH_USERS=$USERS BENCH_THREADS=$THREADS
log "POST /api/orders, saturating: ${ORDERS_SECONDS}s, $CONNS connections, $THREADS threads"
post_orders "$ORDERS_SECONDS" "$WORK/post.txt"
# The saga's backlog when the saturating run stops: orders by status, and what it works on.
backlog=$(curl -s "$URL/metrics" | awk '/^(flashrent_)?orders\{/ || /^(flashrent_)?saga_in_flight /{printf "%s ", $0}')

for rate in $PACED_RATES; do
  log "POST /api/orders, paced at $rate/s: ${PACED_SECONDS}s, $CONNS connections"
  post_orders "$PACED_SECONDS" "$WORK/paced-$rate.txt" "$rate"
done

# --- 5. GET /api/orders/{id} while the saga works through the POST runs' backlog ---------
log "GET /api/orders/{id}, saga busy: ${GET_SECONDS}s, $CONNS connections, $THREADS threads"
BENCH_IDS_FILE=$WORK/ids.txt wrk -t"$THREADS" -c"$CONNS" -d"${GET_SECONDS}s" --timeout 10s \
  --latency -s "$HERE/get_orders.lua" "$URL" | tee "$WORK/get.txt"

# --- 6. memory and order count ---------------------------------------------------------
hwm_kb=$(awk '/^VmHWM/{print $2}' /proc/"$SERVER_PID"/status)
rss_kb=$(awk '/^VmRSS/{print $2}' /proc/"$SERVER_PID"/status)
# Anonymous (heap) against file-backed pages, and what the allocator holds beyond the heap.
rss_split=$(awk '/^Rss(Anon|File):/{printf "%s %d MiB  ", $1, $2/1024}' /proc/"$SERVER_PID"/status)

# Orders counted by the server, not by the client: every order charged 5.85 TRX, so
# the total is sum(credit - balance) / price over the users. (%.0f: mawk's %d clips at 2^31.)
log "counting orders from the users' balances"
spent_sun=$(seq 1 "$USERS" | xargs -P 16 -I{} sh -c \
    'printf "%s\n" "$(curl -s --max-time 10 "$0/api/users/{}/balance")"' "$URL" \
  | sed -n 's/.*"balance_sun":\([0-9]*\).*/\1/p' \
  | awk -v c="$CREDIT_TRX" '{s += c * 1000000 - $1} END {printf "%.0f", s}')
orders_total=$(( spent_sun / PRICE_SUN ))

# The wrk OK counts (2xx) as a cross-check of the server's count.
ok() { awk '/requests in/{r+=$1} /Non-2xx/{n+=$NF} END{print r - n}' "$1"; }  # sums over runs
non2xx() { awk '/Non-2xx/{n=$NF} END{print n+0}' "$1"; }
sockerr() { grep -h 'Socket errors' "$1" || echo "none"; }
field() { awk -v k="$2" '$1==k{print $2}' "$1"; }
rps() { awk '/Requests\/sec/{print $2}' "$1"; }

cpu_s=$(awk '{printf "%d", ($14 + $15) / '"$(getconf CLK_TCK)"'}' /proc/"$SERVER_PID"/stat)
rss_max_kb=$(awk '$2>m{m=$2} END{print m+0}' "$WORK/rss.log")
# The memory target is for a run of MEMORY_ORDERS orders: the highest sample up to the first
# one that counts that many (sled's page table grows with what is stored, so RSS grows on).
rss_at_target=$(awk -v n="$MEMORY_ORDERS" '!done && $2>m{m=$2} !done && $3>=n{done=1; o=$3}
  END{if (done) printf "%d MiB (sampled, to the first sample at %d orders)", m/1024, o; else print "not reached"}' "$WORK/rss.log")
data_du="$(du -sh "$WORK/data" | cut -f1) ($(cd "$WORK/data" && du -sh -- * | awk '{printf "%s %s  ", $2, $1}'))"

# Retires the server (and the memory sampler, which follows the first one) and starts a fresh
# one on DIR with any extra flags, its users credited. The first server's gigabytes are still
# being written back when it stops: its files go, so their dirty pages are dropped instead of
# delaying the new server's log syncs (p99 133 ms at 5,000/s in run X of bench/RESULTS.md).
fresh_server() {
  local dir=$1; shift
  stop_server
  kill "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=""
  rm -rf "$WORK/data"; sync
  mkdir -p "$dir"
  start_server "$dir" "$@"
  credit_users "$dir"
}

# --- 7. the first paced rate on a fresh server --------------------------------------------
# Section 4's paced runs follow the saturating run, so they share the cores with the saga
# working through its backlog of every order taken at full speed. Here the same rate meets a
# fresh server whose saga fulfils at full speed from the first order: a steady load, not the
# aftermath of an overload.
first_rate=${PACED_RATES%% *}
if [[ $FRESH_PACED -gt 0 ]]; then
  log "a fresh server, saga at full speed"
  fresh_server "$WORK/fresh"
  log "POST /api/orders, paced at $first_rate/s on it: ${PACED_SECONDS}s, $CONNS connections"
  post_orders "$PACED_SECONDS" "$WORK/fresh-paced.txt" "$first_rate"
  fresh_done=$(orders_counted "$URL" completed)
  stop_server
fi

# --- 8. intake alone -------------------------------------------------------------------
# The same POST runs on a fresh server whose fulfilment is held to one order a second
# (--saga-rate 1): what taking orders costs by itself, against what it does beside the
# saga and the in-process devnet working at full speed on the same cores (sections 4, 5, 7).
if [[ $INTAKE_SECONDS -gt 0 ]]; then
  log "intake alone: a fresh server with --saga-rate 1"
  fresh_server "$WORK/intake" --saga-rate 1
  log "POST /api/orders, saturating, fulfilment held: ${INTAKE_SECONDS}s, $CONNS connections"
  post_orders "$INTAKE_SECONDS" "$WORK/intake-post.txt"
  log "POST /api/orders, paced at $first_rate/s after it, fulfilment held: ${PACED_SECONDS}s"
  post_orders "$PACED_SECONDS" "$WORK/intake-paced.txt" "$first_rate"
  stop_server
fi

log "SUMMARY"
cat <<EOF
POST /api/orders (saturating, ${CONNS}c, ${ORDERS_SECONDS}s): $(rps "$WORK/post.txt") req/s  p50 $(field "$WORK/post.txt" 50%)  p99 $(field "$WORK/post.txt" 99%)  non-2xx $(non2xx "$WORK/post.txt")  socket errors: $(sockerr "$WORK/post.txt")
$(for rate in $PACED_RATES; do f=$WORK/paced-$rate.txt
echo "POST /api/orders (paced $rate/s, ${PACED_SECONDS}s): $(rps "$f") req/s achieved  p50 $(field "$f" 50%)  p99 $(field "$f" 99%)  non-2xx $(non2xx "$f")  socket errors: $(sockerr "$f")$(awk -v r="$(rps "$f")" -v t="$rate" 'BEGIN{if (r < 0.95 * t) print "  << target rate NOT reached"}')"
done)
GET /api/orders/{id}, quiet (${CONNS}c, ${GET_SECONDS}s):     $(rps "$WORK/get-quiet.txt") req/s  p50 $(field "$WORK/get-quiet.txt" 50%)  p99 $(field "$WORK/get-quiet.txt" 99%)  non-2xx $(non2xx "$WORK/get-quiet.txt")  socket errors: $(sockerr "$WORK/get-quiet.txt")
GET /healthz, quiet (${CONNS}c, ${GET_SECONDS}s):              $(rps "$WORK/healthz.txt") req/s  (GET order / healthz = $(awk -v a="$(rps "$WORK/get-quiet.txt")" -v b="$(rps "$WORK/healthz.txt")" 'BEGIN{printf "%.2f", a / b}'))
plain actix-web hello-world (${CONNS}c, ${GET_SECONDS}s):      $(rps "$WORK/hello.txt") req/s  (GET order / hello-world = $(awk -v a="$(rps "$WORK/get-quiet.txt")" -v b="$(rps "$WORK/hello.txt")" 'BEGIN{printf "%.2f", a / b}'); the target, 95k against 158k, is 0.60)
GET /api/orders/{id}, saga busy (${CONNS}c, ${GET_SECONDS}s): $(rps "$WORK/get.txt") req/s  p50 $(field "$WORK/get.txt" 50%)  p99 $(field "$WORK/get.txt" 99%)  non-2xx $(non2xx "$WORK/get.txt")  socket errors: $(sockerr "$WORK/get.txt")
$(if [[ $FRESH_PACED -gt 0 ]]; then f=$WORK/fresh-paced.txt
echo "POST /api/orders (paced $first_rate/s, fresh server, saga at full speed, ${PACED_SECONDS}s): $(rps "$f") req/s achieved  p50 $(field "$f" 50%)  p99 $(field "$f" 99%)  non-2xx $(non2xx "$f")  (completed by its end: ${fresh_done:-?})"
fi)
$(if [[ $INTAKE_SECONDS -gt 0 ]]; then f=$WORK/intake-post.txt; g=$WORK/intake-paced.txt
echo "POST, intake alone (fresh server, --saga-rate 1, saturating ${INTAKE_SECONDS}s): $(rps "$f") req/s  p50 $(field "$f" 50%)  p99 $(field "$f" 99%)  non-2xx $(non2xx "$f")"
echo "POST, intake alone (paced $first_rate/s after it, ${PACED_SECONDS}s):        $(rps "$g") req/s achieved  p50 $(field "$g" 50%)  p99 $(field "$g" 99%)  non-2xx $(non2xx "$g")"
fi)
orders created (server, from balances): $orders_total
orders created (wrk 2xx + curl ids):    $(( $(ok "$WORK/post.txt") + $(cat "$WORK"/paced-*.txt | ok /dev/stdin) + $(wc -l <"$WORK/ids.txt") ))  (wrk does not count requests still in flight when it stops)
saga backlog as the saturating run ended: $backlog
server peak RSS (VmHWM):                $((hwm_kb / 1024)) MiB   (VmRSS now $((rss_kb / 1024)) MiB, max sampled $((rss_max_kb / 1024)) MiB)
server RSS through $MEMORY_ORDERS orders: $rss_at_target  (target < 300 MiB)
server RSS now by kind:                 $rss_split
data dir on disk:                       $data_du
server CPU time (user+sys):             ${cpu_s} s
EOF
echo "RSS samples (MiB and orders taken, every ~20 s):"
awk 'NR==1{t0=$1} NR%10==1{printf "  t=%4ds %d %dk\n", $1-t0, $2/1024, $3/1000}' "$WORK/rss.log" | paste -sd' ' 
if [[ -s $WORK/server.err ]]; then
  echo "server stderr (last 20 lines):"; tail -n 20 "$WORK/server.err"
fi
