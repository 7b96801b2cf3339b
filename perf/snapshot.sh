#!/usr/bin/env bash
# Snapshot save of N keys (default 1 M) on etcd and Keel, side by side, alternating, R rounds
# (default 3): the time `etcdctl snapshot save` takes, the file's size, the server's peak RSS
# growth during the save (VmHWM after minus VmRSS before), and the time and peak RSS of
# `etcdctl snapshot restore` and of `keelctl snapshot restore` restoring each system's file.
# Writes perf/results/<date>-<host>-snapshot.md.
#
#   perf/snapshot.sh [--keys N] [--rounds R] [--keel PATH] [--etcd PATH]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
perf_init snapshot.sh
keys=1000000
rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) keys=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --keel) keel_bin=$2; shift 2 ;;
    --etcd) etcd_bin=$2; shift 2 ;;
    -h|--help) perf_usage; exit 0 ;;
    *) perf_bad_argument "$1" ;;
  esac
done
[ -x "$keelctl" ] || cargo build --release -p keel --bin keelctl >&2
perf_need "$etcd_bin" "$keel_bin" "$keelctl"
run_dir=perf/.run/snapshot
out=perf/results/$(date -u +%Y-%m-%d)-$(hostname -s 2>/dev/null || uname -n)-snapshot.md
trap 'stop_members --now' EXIT
kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/${pids[0]}/status"; }
results=()

one() {
  local system=$1 binary=$2 round=$3
  rm -rf "$run_dir"; mkdir -p "$run_dir"
  local client peer
  client=$(free_port); peer=$(free_port)
  start_member "$binary" s "$run_dir/data" "$run_dir/server.log" "http://127.0.0.1:$client" \
    "http://127.0.0.1:$peer" --quota-backend-bytes 8589934592
  wait_ready "http://127.0.0.1:$client" 30 || perf_fail "$system did not start; see $run_dir/server.log"
  "$bench" put --endpoints "http://127.0.0.1:$client" --clients 100 --conns 10 --total "$keys" \
    --key-space-size "$keys" --sequential-keys --key-size 16 --val-size 256 --json >/dev/null
  local rss_before start end hwm size restore_start restore_end
  rss_before=$(kb VmRSS)
  start=$(date +%s.%N)
  ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$client" --command-timeout=600s \
    snapshot save "$run_dir/snap.db" >/dev/null 2>&1
  end=$(date +%s.%N)
  hwm=$(kb VmHWM)
  size=$(stat -c %s "$run_dir/snap.db")
  stop_members --now
  # Each restore under GNU time: elapsed seconds and peak RSS in KiB.
  local etcdctl_restore keelctl_restore
  etcdctl_restore=$(ETCDCTL_API=3 /usr/bin/time -f '%e %M' -o /dev/stdout etcdctl snapshot restore \
    "$run_dir/snap.db" --data-dir "$run_dir/restored" --name r \
    --initial-cluster "r=http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" 2>/dev/null | tail -1)
  keelctl_restore=$(/usr/bin/time -f '%e %M' -o /dev/stdout "$keelctl" snapshot restore \
    "$run_dir/snap.db" --data-dir "$run_dir/restored-keel" --name r \
    --initial-cluster "r=http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" 2>/dev/null | tail -1)
  local line
  line=$(awk -v s="$system" -v r="$round" -v a="$start" -v b="$end" -v h="$hwm" -v rb="$rss_before" \
    -v z="$size" -v er="$etcdctl_restore" -v kr="$keelctl_restore" \
    'BEGIN { split(er, e, " "); split(kr, k, " ");
             printf "%s|%s|%.2f|%.0f|%.0f|%.2f|%.0f|%.2f|%.0f", s, r, b - a, z / 1048576, (h - rb) / 1024,
               e[1], e[2] / 1024, k[1], k[2] / 1024 }')
  echo "  $line" >&2
  results+=("$line")
}

for round in $(seq "$rounds"); do
  one etcd "$etcd_bin" "$round"
  one keel "$keel_bin" "$round"
done
rm -rf "$run_dir"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { printf '%s\n' "${results[@]}" | awk -F'|' -v s="$1" -v c="$2" '$1 == s {print $c}' | median; }
{
  echo "# Snapshot save and restore: Keel vs etcd, $(date -u +%Y-%m-%d)"
  echo
  echo "Written by \`perf/snapshot.sh --keys $keys --rounds $rounds\`: $keys keys of 16 bytes with"
  echo "256-byte values, one member, systems alternating, medians of $rounds rounds. etcd:"
  echo "$("$etcd_bin" --version | sed -n 1p). Machine: $(nproc) cores, $(uname -r)."
  echo
  echo "| | etcd | Keel | Keel/etcd |"
  echo "|---|---:|---:|---:|"
  for c in "3|snapshot save, s" "4|file size, MiB" "5|server peak RSS growth during the save, MiB" \
    "6|etcdctl snapshot restore of that file, s" "7|etcdctl snapshot restore of that file, peak RSS MiB" \
    "8|keelctl snapshot restore of that file, s" "9|keelctl snapshot restore of that file, peak RSS MiB"; do
    n=${c%%|*}; name=${c#*|}
    e=$(col etcd "$n"); k=$(col keel "$n")
    ratio=$(awk -v e="$e" -v k="$k" 'BEGIN { if (e > 0) printf "%.2f×", k / e; else print "n/a" }')
    echo "| $name | $e | $k | $ratio |"
  done
  echo
  echo "Each system's backup restored with its own tool (etcd's file with etcdctl, Keel's with"
  echo "keelctl), each into a new data dir:"
  echo
  echo "| | etcdctl (etcd's file) | keelctl (Keel's file) | Keel/etcd |"
  echo "|---|---:|---:|---:|"
  for c in "6 8|restore, s" "7 9|restore, peak RSS MiB"; do
    pair=${c%%|*}; name=${c#*|}
    e=$(col etcd "${pair% *}"); k=$(col keel "${pair#* }")
    ratio=$(awk -v e="$e" -v k="$k" 'BEGIN { if (e > 0) printf "%.2f×", k / e; else print "n/a" }')
    echo "| $name | $e | $k | $ratio |"
  done
  echo
  echo "Raw rounds (system|round|save s|size MiB|RSS growth MiB|etcdctl restore s|etcdctl restore RSS MiB|keelctl restore s|keelctl restore RSS MiB):"
  echo
  printf '    %s\n' "${results[@]}"
} >"$out"
echo "snapshot.sh: wrote $out" >&2
