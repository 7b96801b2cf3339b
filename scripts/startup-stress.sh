#!/usr/bin/env bash
# Starts many one-member Keel clusters at once, round after round, and checks that every
# member answers /health within a deadline. On a member that does not, prints its threads'
# kernel wait channels and (when gdb is installed) their stacks, and exits 1.
#
# This is how the glommio scheduler bug that `src/executor.rs` works around was found: on a
# 2-core machine, 12 members at once hung about one start in 400 before the fix.
#
#   scripts/startup-stress.sh [--members 12] [--rounds 100] [--deadline 15] [--keel PATH]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
members=12
rounds=100
deadline=15
keel=${CARGO_TARGET_DIR:-$repo/target}/release/keel
while [ $# -gt 0 ]; do
  case "$1" in
    --members) members=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --deadline) deadline=$2; shift 2 ;;
    --keel) keel=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "startup-stress.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$keel" ] || { echo "startup-stress.sh: $keel not found (cargo build --release -p keel)" >&2; exit 1; }

dir=$(mktemp -d)
pids=()
stop() {
  local pid
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for round in $(seq "$rounds"); do
  rm -rf "${dir:?}"/*
  clients=()
  for i in $(seq "$members"); do
    client=$(free_port)
    peer=$(free_port)
    "$keel" --name "m$i" --data-dir "$dir/m$i" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "m$i=http://127.0.0.1:$peer" >"$dir/m$i.log" 2>&1 &
    pids+=($!)
    clients+=("$client")
  done
  started=$SECONDS
  for i in $(seq 0 $((members - 1))); do
    until curl -sf "http://127.0.0.1:${clients[$i]}/health" >/dev/null; do
      if [ $((SECONDS - started)) -gt "$deadline" ]; then
        pid=${pids[$i]}
        echo "round $round: member m$((i + 1)) (pid $pid) is not healthy after ${deadline}s; its log:"
        cat "$dir/m$((i + 1)).log"
        for task in /proc/"$pid"/task/*; do
          echo "thread $(cat "$task/comm"): waits in $(cat "$task/wchan")"
        done
        if command -v gdb >/dev/null; then
          gdb -p "$pid" -batch -ex "thread apply all bt" 2>/dev/null | grep -E '^(Thread|#)' | cut -c1-200
        fi
        exit 1
      fi
      sleep 0.05
    done
  done
  echo "round $round: $members members healthy in $((SECONDS - started))s"
  stop
done
