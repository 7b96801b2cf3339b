#!/usr/bin/env bash
# Memory and restart time with many keys, Keel vs upstream etcd (issue 4's last targets):
# loads N keys of 256 B into a fresh single member of each system, records the server's RSS,
# stops it (SIGTERM), restarts it on the same data dir and times until a linearizable read of
# the last key succeeds. Writes perf/results/<date>-<host>-memory.md.
#
#   perf/memory-restart.sh [--keys 1000000] [--etcd PATH] [--keel PATH]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
keys=1000000
etcd_bin=/usr/bin/etcd
target_dir=${CARGO_TARGET_DIR:-$repo/target}
keel_bin=$target_dir/release/keel
bench=$target_dir/release/keel-bench
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) keys=$2; shift 2 ;;
    --etcd) etcd_bin=$2; shift 2 ;;
    --keel) keel_bin=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "memory-restart.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$bench" ] || cargo build --release -p keel-bench >&2
for bin in "$etcd_bin" "$keel_bin"; do
  [ -x "$bin" ] || { echo "memory-restart.sh: $bin not found" >&2; exit 1; }
done

run_dir=$repo/perf/.run/memory
rm -rf "$run_dir"
mkdir -p "$run_dir"
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # system data_dir client_port peer_port
  local client=http://127.0.0.1:$3 peer=http://127.0.0.1:$4 bin=$etcd_bin
  [ "$1" = keel ] && bin=$keel_bin
  "$bin" --name m1 --data-dir "$2" --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" --initial-cluster "m1=$peer" \
    >>"$run_dir/$1.log" 2>&1 &
  pid=$!
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
  for _ in $(seq 1 3000); do
    ETCDCTL_API=3 etcdctl --endpoints="$endpoint" --command-timeout=1s put ready 1 >/dev/null 2>&1 && break
    sleep 0.01
  done
  echo "memory-restart.sh: $system: loading $keys keys" >&2
  t0=$(date +%s.%N)
  # Keys 00000000 .. <keys-1> (zero-padded), each written once, by 100 clients on 10 connections.
  "$bench" put --endpoints "http://$endpoint" --conns 10 --clients 100 --total "$keys" \
    --key-space-size "$keys" --sequential-keys --key-size 8 --val-size 256 --json \
    >"$run_dir/$system-load.json"
  load_secs[$system]=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
  sleep 2
  rss[$system]=$(( $(ps -o rss= -p "$pid") / 1024 ))
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  started=$(python3 -c 'import time; print(time.time())')
  start "$system" "$data" "$client_port" "$peer_port"
  restart[$system]=$(wait_read "$endpoint" "$started")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
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
