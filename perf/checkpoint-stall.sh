#!/usr/bin/env bash
# Write latency while a checkpoint (etcd: a snapshot) of 1M keys is taken, Keel vs upstream
# etcd: loads N keys of 256 B into a fresh single member started with
# --snapshot-count N+100000, measures puts of 10 clients that stay below that count (the
# baseline), then puts that cross it, so the checkpoint is taken while they run. Reports per
# system the baseline p99, the p99 and max latency of the window with the checkpoint, and
# max(window) / p99(baseline) (Keel's target: at most 5x), and the member's peak RSS
# (VmHWM, which the checkpoint's memory raises). Rounds alternate etcd, keel, ...
# Writes perf/results/<date>-<host>-checkpoint.md.
#
#   perf/checkpoint-stall.sh [--keys 1000000] [--rounds 3] [--etcd PATH] [--keel PATH]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
perf_init checkpoint-stall.sh
keys=1000000
rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) keys=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --etcd) etcd_bin=$2; shift 2 ;;
    --keel) keel_bin=$2; shift 2 ;;
    -h|--help) perf_usage; exit 0 ;;
    *) perf_bad_argument "$1" ;;
  esac
done
perf_need "$etcd_bin" "$keel_bin"

run_dir=$repo/perf/.run/checkpoint
rm -rf "$run_dir"
mkdir -p "$run_dir"
trap 'stop_members --now' EXIT

snapshot_count=$((keys + 100000))
baseline_puts=50000
window_puts=150000

start() { # system data_dir client_port peer_port log
  local bin=$etcd_bin
  [ "$1" = keel ] && bin=$keel_bin
  start_member "$bin" m1 "$2" "$5" "http://127.0.0.1:$3" "http://127.0.0.1:$4" \
    --snapshot-count "$snapshot_count" --quota-backend-bytes 8589934592
}

json_field() { python3 -c "import json,sys; d=json.load(open('$1')); print(d['latency_us']['$2'])"; }

results=$run_dir/results.tsv
: >"$results"
for round in $(seq 1 "$rounds"); do
  for system in etcd keel; do
    data=$run_dir/$system-$round
    log=$run_dir/$system-$round.log
    client_port=$(free_port); peer_port=$(free_port)
    endpoint=http://127.0.0.1:$client_port
    start "$system" "$data" "$client_port" "$peer_port" "$log"
    wait_ready "$endpoint" 30 || perf_fail "$system did not start; see $log"
    echo "checkpoint-stall.sh: round $round $system: loading $keys keys" >&2
    "$bench" put --endpoints "$endpoint" --conns 10 --clients 100 --total "$keys" \
      --key-space-size "$keys" --sequential-keys --key-size 8 --val-size 256 --json \
      >"$run_dir/$system-$round-load.json"
    before=$(grep -c -i -E "checkpoint written|saved snapshot" "$log" || true)
    "$bench" put --endpoints "$endpoint" --conns 2 --clients 10 --total "$baseline_puts" \
      --key-space-size "$keys" --key-size 8 --val-size 256 --json >"$run_dir/$system-$round-base.json"
    "$bench" put --endpoints "$endpoint" --conns 2 --clients 10 --total "$window_puts" \
      --key-space-size "$keys" --key-size 8 --val-size 256 --json >"$run_dir/$system-$round-window.json"
    sleep 1
    after=$(grep -c -i -E "checkpoint written|saved snapshot" "$log" || true)
    peak_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/${pids[0]}/status" 2>/dev/null || echo 0)
    stop_members
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$round" \
      "$(json_field "$run_dir/$system-$round-base.json" p99)" \
      "$(json_field "$run_dir/$system-$round-window.json" p99)" \
      "$(json_field "$run_dir/$system-$round-window.json" max)" \
      "$((after - before))" "${peak_kib:-0}" >>"$results"
    rm -rf "$data"
  done
done

out=perf/results/$(date +%F)-$(hostname -s)-checkpoint.md
python3 - "$results" "$keys" "$rounds" "$("$etcd_bin" --version | head -1 | awk '{print $3}')" >"$out" <<'PY'
import statistics, sys
path, keys, rounds, etcd_version = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]
by = {}
for system, rnd, base_p99, win_p99, win_max, taken, peak_kib in rows:
    by.setdefault(system, []).append(
        (int(base_p99), int(win_p99), int(win_max), int(taken), int(peak_kib) // 1024))
print(f"# Write latency during a checkpoint of {keys:,} keys: Keel vs etcd {etcd_version}")
print()
print("Written by `perf/checkpoint-stall.sh`. One member per system, loaded with keys of 8 B and")
print("256 B values, started with `--snapshot-count` 100,000 above the load. Baseline: 50,000")
print("random-key puts from 10 clients (below the count). Window: 150,000 more, which cross it,")
print("so the member takes its checkpoint (etcd: its snapshot) while they run. Latencies in")
print(f"microseconds, medians of {rounds} alternating rounds; 'taken' counts the checkpoints or")
print("snapshots the member logged during the runs; 'peak RSS' is the member's VmHWM at the")
print("end of the window, in MiB (the load, the window and the checkpoint's own memory).")
print()
print("| system | baseline p99 | window p99 | window max | max / baseline p99 | taken | peak RSS |")
print("|---|---:|---:|---:|---:|---:|---:|")
for system in ("etcd", "keel"):
    runs = by.get(system, [])
    if not runs:
        continue
    base = statistics.median(r[0] for r in runs)
    wp99 = statistics.median(r[1] for r in runs)
    wmax = statistics.median(r[2] for r in runs)
    ratio = statistics.median(r[2] / r[0] for r in runs)
    taken = "/".join(str(r[3]) for r in runs)
    peak = statistics.median(r[4] for r in runs)
    print(f"| {system} | {base:.0f} | {wp99:.0f} | {wmax:.0f} | {ratio:.1f}x | {taken} | {peak:.0f} |")
print()
print("Per round (baseline p99, window p99, window max, peak RSS in MiB):")
print()
for system in ("etcd", "keel"):
    for i, r in enumerate(by.get(system, []), 1):
        print(f"- {system} round {i}: {r[0]}, {r[1]}, {r[2]}, {r[4]} (taken {r[3]})")
PY
echo "checkpoint-stall.sh: wrote $out" >&2
