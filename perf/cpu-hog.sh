#!/usr/bin/env bash
# What a busy CPU does to write latency: puts from 10 clients to one fresh Keel member, run
# with nothing else (none), then with a shell busy loop pinned to CPU --cpu at nice 10
# (nice10) and at SCHED_IDLE (idle), in alternating rounds. Prints per run the put p50, p99
# and max (µs) and the puts over 3 ms. The CPU that takes the WAL disk's interrupts
# (/proc/interrupts) is the one to try: an O_DSYNC write submitted through io_uring completes
# there, so a busy thread there delayed every write while Keel wrote its WAL that way
# (perf/results/2026-12-01-vm-wal-thread.md). --keel /usr/bin/etcd runs it against etcd.
#
#   perf/cpu-hog.sh [--cpu 1] [--rounds 2] [--puts 40000] [--keel PATH]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
perf_init cpu-hog.sh
cpu=1
rounds=2
puts=40000
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) cpu=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --puts) puts=$2; shift 2 ;;
    --keel) keel_bin=$2; shift 2 ;;
    -h|--help) perf_usage; exit 0 ;;
    *) perf_bad_argument "$1" ;;
  esac
done
perf_need "$keel_bin"

run_dir=$repo/perf/.run/cpu-hog
rm -rf "$run_dir"
mkdir -p "$run_dir"
hog=""
stop_hog() {
  if [ -n "$hog" ]; then
    kill "$hog" 2>/dev/null || true
    wait "$hog" 2>/dev/null || true
    hog=""
  fi
}
trap 'stop_hog; stop_members --now' EXIT

client_port=$(free_port); peer_port=$(free_port)
endpoint=http://127.0.0.1:$client_port
start_member "$keel_bin" m1 "$run_dir/data" "$run_dir/member.log" "$endpoint" \
  "http://127.0.0.1:$peer_port"
wait_ready "$endpoint" 30 || perf_fail "keel did not start; see $run_dir/member.log"
put() { # json slow-log
  "$bench" put --endpoints "$endpoint" --conns 2 --clients 10 --total "$puts" \
    --key-space-size 10000 --key-size 8 --val-size 256 --json --slow-log 3ms >"$1" 2>"$2"
}
put "$run_dir/warm.json" "$run_dir/warm-slow.txt"
echo "variant round p50 p99 max over-3ms"
for round in $(seq 1 "$rounds"); do
  for variant in none nice10 idle; do
    case $variant in
      nice10) taskset -c "$cpu" nice -n 10 sh -c 'while :; do :; done' & hog=$! ;;
      idle) taskset -c "$cpu" chrt -i 0 sh -c 'while :; do :; done' & hog=$! ;;
    esac
    put "$run_dir/$variant-$round.json" "$run_dir/$variant-$round-slow.txt"
    stop_hog
    python3 - "$run_dir/$variant-$round.json" "$run_dir/$variant-$round-slow.txt" \
      "$variant" "$round" <<'PY'
import json, sys
latency = json.load(open(sys.argv[1]))["latency_us"]
slow = sum(1 for _ in open(sys.argv[2]))
print(sys.argv[3], sys.argv[4], latency["p50"], latency["p99"], latency["max"], slow)
PY
  done
done
