#!/usr/bin/env bash
# A local Kafka-protocol broker for development, tests and CI: Tansu (an Apache-Kafka-compatible
# broker in Rust, from crates.io) with its data in SQLite, so it survives a restart or kill -9.
#
#   kafka/broker.sh start    install if needed, start, wait until it answers; prints where
#   kafka/broker.sh stop     stop it (its data stays)
#   kafka/broker.sh status   exit 0 if it answers
#   kafka/broker.sh reset    stop and delete its data
#
# Environment: KAFKA_PORT (9092), KAFKA_DIR (target/kafka-broker), TANSU_VERSION (0.6.0).
# Tansu 0.6.0 has no Kafka transactions (EndTxn); flashrent does not use them (docs/decisions/0005).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${KAFKA_PORT:-9092}"
DIR="${KAFKA_DIR:-$PWD/target/kafka-broker}"
VERSION="${TANSU_VERSION:-0.6.0}"
PIDFILE="$DIR/tansu.pid"
# An IPv4 address, never "localhost": clients connect to what is advertised.
URL="tcp://127.0.0.1:$PORT"

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

running_pid() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"
}

install() {
  if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q "$VERSION"; then
    return
  fi
  echo "installing tansu $VERSION (about 11 minutes on 2 cores, once)..." >&2
  cargo install tansu --version "$VERSION" --locked --features libsql,dynostore >&2
}

start() {
  mkdir -p "$DIR"
  if pid=$(running_pid); then
    echo "broker already running (pid $pid) at 127.0.0.1:$PORT"
    return
  fi
  if answers; then
    echo "something else already listens on 127.0.0.1:$PORT" >&2
    exit 1
  fi
  install
  # Tansu reads the SQLite path relative to its working directory.
  (cd "$DIR" && PATH="$HOME/.cargo/bin:$PATH" exec nohup tansu broker \
    --listener-url "$URL" --advertised-listener-url "$URL" \
    --storage-engine "sqlite://tansu.db" >>"$DIR/tansu.log" 2>&1) &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    if answers; then
      echo "broker listening at 127.0.0.1:$PORT (data $DIR, log $DIR/tansu.log)"
      return
    fi
    if ! running_pid >/dev/null; then
      echo "the broker exited; see $DIR/tansu.log" >&2
      tail -20 "$DIR/tansu.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "the broker did not answer on 127.0.0.1:$PORT within 10 s; see $DIR/tansu.log" >&2
  exit 1
}

stop() {
  if pid=$(running_pid); then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    echo "broker stopped"
  fi
  rm -f "$PIDFILE"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  reset) stop; rm -rf "$DIR" ;;
  *) echo "usage: $0 start|stop|status|reset" >&2; exit 2 ;;
esac
