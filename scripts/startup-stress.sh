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
. "$(dirname "$0")/../perf/lib.sh"
perf_init startup-stress.sh
members=12
rounds=100
deadline=15
while [ $# -gt 0 ]; do
  case "$1" in
    --members) members=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --deadline) deadline=$2; shift 2 ;;
    --keel) keel_bin=$2; shift 2 ;;
    -h|--help) perf_usage; exit 0 ;;
    *) perf_bad_argument "$1" ;;
  esac
done
[ -x "$keel_bin" ] || perf_fail "$keel_bin not found (cargo build --release -p keel)"

dir=$(mktemp -d)
trap 'stop_members --now; rm -rf "$dir"' EXIT

for round in $(seq "$rounds"); do
  rm -rf "${dir:?}"/*
  clients=()
  for i in $(seq "$members"); do
    client=$(free_port)
    peer=$(free_port)
    start_member "$keel_bin" "m$i" "$dir/m$i" "$dir/m$i.log" "http://127.0.0.1:$client" \
      "http://127.0.0.1:$peer"
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
  stop_members --now
done
