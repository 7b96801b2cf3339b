#!/usr/bin/env bash
# Where the CPU goes per operation, Keel vs upstream etcd: starts a fresh cluster of each system
# (3 members by default, all on this machine), runs keel-bench workloads against the leader
# under `perf stat --per-thread` on the member processes, and reports per operation the CPU
# time of the members' threads (grouped by thread name), their context switches and the
# system calls that carry their I/O and wake-ups. On a machine where client and members share
# the cores, CPU per operation bounds throughput; wake-ups and hand-offs between threads
# bound sequential latency. Rounds alternate etcd, Keel; each cell is the median.
# Writes perf/results/<date>-<host>-cpu.md (or -3m-cpu.md for 3 members).
#
#   perf/cpu-per-op.sh [--members 3] [--rounds 3] [--duration 6s] [--etcd PATH] [--keel PATH]
#
# Needs perf(1) (Debian: linux-perf) and permission to count the members' events (root, or
# kernel.perf_event_paranoid <= 1).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
perf_init cpu-per-op.sh
members=3
rounds=3
duration=6s
while [ $# -gt 0 ]; do
  case "$1" in
    --members) members=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --etcd) etcd_bin=$2; shift 2 ;;
    --keel) keel_bin=$2; shift 2 ;;
    -h|--help) perf_usage; exit 0 ;;
    *) perf_bad_argument "$1" ;;
  esac
done
command -v perf >/dev/null || perf_fail "perf not found (apt-get install linux-perf)"
perf_need "$etcd_bin" "$keel_bin"

run_dir=$repo/perf/.run/cpu
rm -rf "$run_dir"
mkdir -p "$run_dir"
trap stop_members EXIT

# start_cluster SYSTEM BINARY: fresh data dirs; sets $endpoints once a put succeeds.
start_cluster() {
  start_members "$2" "$members" "$run_dir" "$1" http
  wait_ready "$endpoints" 30 --target-leader \
    || perf_fail "$1 did not start; see $run_dir/$1-m1.log"
}

workloads=(
  "put-seq|put --clients 1 --conns 1 --key-space-size 100000"
  "put-100c|put --clients 100 --conns 10 --key-space-size 100000"
  "range-l-100c|range --consistency l --clients 100 --conns 10 --key-space-size 1000 --preload"
)
events=task-clock,context-switches,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_membarrier,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmsg,syscalls:sys_enter_fdatasync

for round in $(seq "$rounds"); do
  for entry in "${workloads[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    for system in etcd keel; do
      binary=$etcd_bin
      [ "$system" = keel ] && binary=$keel_bin
      start_cluster "$system" "$binary"
      out=$run_dir/$system-$name-r$round
      member_pids=$(IFS=,; echo "${pids[*]}")
      # shellcheck disable=SC2086 # $args is a word list on purpose.
      perf stat --per-thread -x ';' -e "$events" -p "$member_pids" -o "$out.stat" -- \
        "$bench" $args --endpoints "$endpoints" --target-leader --duration "$duration" \
        --json >"$out.json"
      echo "cpu-per-op.sh: round $round $name $system: $(grep -o '"ok":[0-9]*' "$out.json")" >&2
      stop_members --now
      rm -rf "$run_dir/$system-m"*
    done
  done
done

suffix=cpu
[ "$members" -gt 1 ] && suffix=${members}m-cpu
out=perf/results/$(date +%F)-$(hostname -s)-$suffix.md
python3 - "$run_dir" "$members" "$rounds" "$duration" "$("$etcd_bin" --version | head -1 | awk '{print $3}')" >"$out" <<'PY'
import collections, glob, json, os, re, statistics, sys
run_dir, members, rounds, duration, etcd_version = sys.argv[1:6]
WORKLOADS = [("put-seq", "sequential put: 1 client"),
             ("put-100c", "put: 100 clients on 10 connections"),
             ("range-l-100c", "linearizable range: 100 clients")]
SYSCALLS = ["io_uring_enter", "membarrier", "futex", "epoll_pwait", "write", "read",
            "sendto", "recvfrom", "sendmsg", "recvmsg", "fdatasync"]

def group(thread):
    # "keel-raft-1-7393" -> "keel-raft"; "iou-wrk-7393-7565" -> "io_uring worker"; "etcd-123" -> "etcd"
    name = re.sub(r"-\d+$", "", thread)
    if name.startswith("iou-wrk"):
        return "io_uring workers"
    name = re.sub(r"(-\d+)+$", "", name)
    return name

def parse(stat_path, json_path):
    ops = json.load(open(json_path))["ok"]
    cpu = collections.Counter()
    counts = collections.Counter()
    for line in open(stat_path):
        fields = line.rstrip("\n").split(";")
        if len(fields) < 4 or line.startswith("#"):
            continue
        thread, value, _unit, event = fields[0], fields[1], fields[2], fields[3]
        try:
            value = float(value)
        except ValueError:
            continue
        if event.startswith("task-clock"):
            cpu[group(thread)] += value * 1000.0  # ms -> us
        elif event == "context-switches":
            counts["context switches"] += value
        elif event.startswith("syscalls:sys_enter_"):
            counts[event[len("syscalls:sys_enter_"):]] += value
    return ops, {k: v / ops for k, v in cpu.items()}, {k: v / ops for k, v in counts.items()}

def median(values):
    return statistics.median(values) if values else 0.0

print(f"# CPU per operation: Keel vs etcd {etcd_version}, {members} member(s)")
print()
print("Written by `perf/cpu-per-op.sh`: a fresh cluster per run, the workload sent to the")
print(f"leader for {duration}, `perf stat --per-thread` on the member processes (not the load")
print("generator). Per operation: CPU time of the members' threads in microseconds (grouped by")
print("thread name; Go names every etcd thread `etcd`), context switches, and system calls.")
print(f"Medians of {rounds} alternating rounds. The machine's cores are shared by all members and")
print("the load generator, so CPU per operation bounds throughput there.")
for workload, title in WORKLOADS:
    runs = {"etcd": [], "keel": []}
    for system in runs:
        for r in range(1, int(rounds) + 1):
            base = os.path.join(run_dir, f"{system}-{workload}-r{r}")
            if os.path.exists(base + ".stat") and os.path.exists(base + ".json"):
                runs[system].append(parse(base + ".stat", base + ".json"))
    print()
    print(f"## `{workload}`: {title}")
    print()
    print("| per operation | etcd | Keel | Keel/etcd |")
    print("|---|---:|---:|---:|")
    def row(label, getter, fmt="{:.0f}"):
        e = median([getter(r) for r in runs["etcd"]])
        k = median([getter(r) for r in runs["keel"]])
        ratio = f"{k / e:.2f}x" if e else "-"
        print(f"| {label} | {fmt.format(e)} | {fmt.format(k)} | {ratio} |")
    row("operations per run", lambda r: r[0])
    row("CPU µs, all member threads", lambda r: sum(r[1].values()))
    row("context switches", lambda r: r[2].get("context switches", 0), "{:.1f}")
    for call in SYSCALLS:
        if any(r[2].get(call, 0) >= 0.05 for s in runs.values() for r in s):
            row(f"`{call}` calls", lambda r, c=call: r[2].get(c, 0), "{:.1f}")
    groups = sorted({g for r in runs["keel"] for g in r[1]},
                    key=lambda g: -median([r[1].get(g, 0) for r in runs["keel"]]))
    print()
    print("Keel's CPU µs per operation by thread: " + ", ".join(
        f"{g} {median([r[1].get(g, 0) for r in runs['keel']]):.0f}" for g in groups
        if median([r[1].get(g, 0) for r in runs["keel"]]) >= 1) + ".")
PY
echo "cpu-per-op.sh: wrote $out" >&2
