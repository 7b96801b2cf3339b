#!/usr/bin/env bash
# Memory and restart time with many keys, Keel vs upstream etcd (issue 4's last targets):
# loads N keys of 256 B into a fresh single member of each system, records the server's RSS,
# stops it (SIGTERM), restarts it on the same data dir and times until a linearizable read of
# the last key succeeds. Writes perf/results/<date>-<host>-memory.md.
#
#   perf/memory-restart.sh [--keys 1000000] [--etcd PATH] [--keel PATH]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
perf_init memory-restart.sh
keys=1000000
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) keys=$2; shift 2 ;;
    --etcd) etcd_bin=$2; shift 2 ;;
    --keel) keel_bin=$2; shift 2 ;;
    -h|--help) perf_usage; exit 0 ;;
    *) perf_bad_argument "$1" ;;
  esac
done
perf_need "$etcd_bin" "$keel_bin"

run_dir=$repo/perf/.run/memory
rm -rf "$run_dir"
mkdir -p "$run_dir"
trap 'stop_members --now' EXIT

start() { # system data_dir client_port peer_port
  local bin=$etcd_bin
  [ "$1" = keel ] && bin=$keel_bin
  start_member "$bin" m1 "$2" "$run_dir/$1.log" "http://127.0.0.1:$3" "http://127.0.0.1:$4"
}

# Seconds until a linearizable read of the last key answers (polls every 10 ms, 600 s max).
wait_read() { # endpoint started_at
  local key
  key=$(printf '%08d' $((keys - 1)))
  for _ in $(seq 1 60000); do
    if ETCDCTL_API=3 etcdctl --endpoints="$1" --command-timeout=2s get "$key" --print-value-only 2>/dev/null | grep -q .; then
      python3 -c "import time; print(f'{time.time() - $2:.2f}')"
      return 0
    fi
    sleep 0.01
  done
  echo "timeout"
}

declare -A rss restart load_secs
for system in etcd keel; do
  data=$run_dir/$system-data
  client_port=$(free_port); peer_port=$(free_port)
  endpoint=127.0.0.1:$client_port
  start "$system" "$data" "$client_port" "$peer_port"
  wait_ready "http://$endpoint" 30 || perf_fail "$system did not start; see $run_dir/$system.log"
  echo "memory-restart.sh: $system: loading $keys keys" >&2
  t0=$(date +%s.%N)
  # Keys 00000000 .. <keys-1> (zero-padded), each written once, by 100 clients on 10 connections.
  "$bench" put --endpoints "http://$endpoint" --conns 10 --clients 100 --total "$keys" \
    --key-space-size "$keys" --sequential-keys --key-size 8 --val-size 256 --json \
    >"$run_dir/$system-load.json"
  load_secs[$system]=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
  sleep 2
  rss[$system]=$(( $(ps -o rss= -p "${pids[0]}") / 1024 ))
  stop_members
  started=$(python3 -c 'import time; print(time.time())')
  start "$system" "$data" "$client_port" "$peer_port"
  restart[$system]=$(wait_read "$endpoint" "$started")
  stop_members
  echo "memory-restart.sh: $system: rss ${rss[$system]} MiB, restart ${restart[$system]} s" >&2
done

out=perf/results/$(date +%F)-$(hostname -s)-memory.md
{
  echo "# Memory and restart with $keys keys: Keel vs etcd ($(date +%F))"
  echo
  echo "Written by \`perf/memory-restart.sh --keys $keys\`. Keys \`00000000\`... (8 B) with 256 B"
  echo "values, each written once by \`keel-bench put\` (100 clients, 10 connections), then RSS of"
  echo "the server process 2 s after the load; then SIGTERM, restart on the same data dir, and the"
  echo "time from exec until a linearizable read of the last key answers."
  echo
  echo "| | etcd $("$etcd_bin" --version | head -1 | awk '{print $3}') | Keel | Keel/etcd |"
  echo "|---|---:|---:|---:|"
  echo "| load time (s) | ${load_secs[etcd]} | ${load_secs[keel]} | $(python3 -c "print(f'{${load_secs[keel]}/${load_secs[etcd]}:.2f}x')") |"
  echo "| RSS after load (MiB) | ${rss[etcd]} | ${rss[keel]} | $(python3 -c "print(f'{${rss[keel]}/${rss[etcd]}:.2f}x')") |"
  echo "| restart to first read (s) | ${restart[etcd]} | ${restart[keel]} | $(python3 -c "print(f'{${restart[keel]}/${restart[etcd]}:.2f}x')" 2>/dev/null || echo n/a) |"
} >"$out"
echo "memory-restart.sh: wrote $out" >&2
