#!/usr/bin/env bash
# Runs upstream etcd and Keel side by side under the same keel-bench workloads and writes a
# markdown report with SVG plots. See perf/README.md for what each workload is.
#
#   perf/compare.sh [--rounds N] [--members 1|3] [--quick] [--sweep] [--no-extra]
#                   [--duration 8s] [--build-keel] [--etcd PATH] [--keel PATH] [--tag NAME]
#                   [--secure]
#
# --secure runs put and range with 100 clients over mutual TLS (https client URLs,
# --client-cert-auth) with auth enabled (simple tokens; a benchmark user whose role grants
# read-write on every key, so every request is checked), on both systems configured alike;
# its tag ends in -secure.
# Each (round, workload, system) gets a fresh cluster on a fresh data dir under perf/.run/ (the
# same filesystem for both systems), and the systems alternate: etcd, keel, etcd, keel... so
# that slow drifts of a shared machine hit both alike. Raw JSON goes to
# perf/results/raw/<tag>/, the report to perf/results/<tag>.md and its plots to
# perf/results/<tag>/, where <tag> is <date>-<host>, plus -3m with --members 3, or --tag NAME.
# If Keel cannot start (binary missing, or it exits), its column says "n/a" and the etcd
# column is still produced.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
perf_init compare.sh

rounds=3
members=1
quick=0
sweep=0
extra=1
duration=8s
build_keel=0
tag_override=""
secure=0
# Keel's binary: the release build in this target dir, else in the repository's own target/.
[ -x "$keel_bin" ] || keel_bin=$repo/target/release/keel

while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --members) members=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --sweep) sweep=1; shift ;;
    --no-extra) extra=0; shift ;;
    --duration) duration=$2; shift 2 ;;
    --build-keel) build_keel=1; shift ;;
    --etcd) etcd_bin=$2; shift 2 ;;
    --keel) keel_bin=$2; shift 2 ;;
    --tag) tag_override=$2; shift 2 ;;
    --secure) secure=1; shift ;;
    -h|--help) perf_usage; exit 0 ;;
    *) perf_bad_argument "$1" ;;
  esac
done
if [ "$quick" = 1 ]; then
  rounds=1
  duration=2s
fi
case "$members" in 1|3) ;; *) echo "compare.sh: --members must be 1 or 3" >&2; exit 2 ;; esac

if [ ! -x "$etcd_bin" ]; then
  echo "compare.sh: $etcd_bin not found; run scripts/install-test-deps.sh" >&2
  exit 1
fi

echo "compare.sh: building keel-bench (release)" >&2
cargo build --release -q -p keel-bench
if [ "$build_keel" = 1 ]; then
  echo "compare.sh: building keel (release)" >&2
  cargo build --release -q -p keel || echo "compare.sh: keel failed to build" >&2
fi

date_tag=$(date -u +%Y-%m-%d)
host=$(hostname -s 2>/dev/null || uname -n)
tag=$date_tag-$host
[ "$members" = 3 ] && tag=$tag-3m
[ "$secure" = 1 ] && tag=$tag-secure
[ -n "$tag_override" ] && tag=$tag_override
# Paths relative to the repository root (the working directory), so the report names them so.
raw=perf/results/raw/$tag
report=perf/results/$tag.md
run_dir=perf/.run
rm -rf "$raw"
mkdir -p "$raw" "$run_dir"

json_escape() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr -d '\n\r\t'; }

trap stop_members EXIT
trap 'echo "compare.sh: command failed at line $LINENO" >&2' ERR

# start_cluster SYSTEM BINARY: starts $members members on fresh data dirs and waits until a
# put succeeds. Returns 1 (with the reason in $start_error) if a member exits or 30 s pass.
start_cluster() {
  local system=$1 binary=$2
  start_error=""
  start_members "$binary" "$members" "$run_dir" "$system" "$scheme" "${server_tls[@]}"
  if ! wait_ready "$endpoints" 30 "${client_tls[@]}" --target-leader; then
    local why="not ready within 30 s"
    [ -n "$exit_code" ] && why="exited with code $exit_code"
    start_error="$why: $(tail -n 1 "$run_dir/$system-m1.log" 2>/dev/null)"
    stop_members
    return 1
  fi
  if [ "$secure" = 1 ] && ! "$bench" auth-setup --endpoints "$endpoints" \
    "${client_tls[@]}" --target-leader >>"$run_dir/$system-auth-setup.log" 2>&1; then
    start_error="auth set-up failed: $(tail -n 1 "$run_dir/$system-auth-setup.log")"
    stop_members
    return 1
  fi
}

# TLS and auth (--secure): certificates made once, the same for both systems.
scheme=http
server_tls=()
client_tls=()
if [ "$secure" = 1 ]; then
  scheme=https
  certs=$run_dir/certs
  mkdir -p "$run_dir"
  "$bench" certs --dir "$certs"
  server_tls=(--cert-file "$certs/server.pem" --key-file "$certs/server.key"
    --client-cert-auth --trusted-ca-file "$certs/ca.pem")
  client_tls=(--cacert "$certs/ca.pem" --cert "$certs/client.pem" --key "$certs/client.key")
fi

# Workloads: name, then keel-bench arguments (endpoints and duration are added).
workloads=(
  "put-seq|put --clients 1 --conns 1 --key-space-size 100000"
  "put-100c|put --clients 100 --conns 10 --key-space-size 100000"
  "range-l-100c|range --consistency l --clients 100 --conns 10 --key-space-size 1000 --preload"
  "range-s-100c|range --consistency s --clients 100 --conns 10 --key-space-size 1000 --preload"
  "watch-latency-100w|watch-latency --streams 10 --watchers-per-stream 10 --rate 100"
)
if [ "$extra" = 1 ]; then
  workloads+=(
    "txn-mixed-100c|txn-mixed --rw-ratio 4 --clients 100 --conns 10 --key-space-size 100000"
    "k8s-100c|k8s --clients 100 --conns 10 --objects 1000"
  )
fi
if [ "$secure" = 1 ]; then
  workloads=(
    "tls-auth-put-100c|put --clients 100 --conns 10 --key-space-size 100000 --user bench:bench"
    "tls-auth-range-l-100c|range --consistency l --clients 100 --conns 10 --key-space-size 1000 --preload --user bench:bench"
    "tls-auth-range-s-100c|range --consistency s --clients 100 --conns 10 --key-space-size 1000 --preload --user bench:bench"
  )
fi
if [ "$sweep" = 1 ]; then
  for c in 1 10 100 1000; do
    conns=$(( c < 10 ? c : c / 10 ))
    workloads+=("sweep-put-c$c|put --clients $c --conns $conns --key-space-size 100000")
  done
fi

keel_status="available"
# Set once Keel has started: a later failure to start is then a failed run, not "n/a".
keel_started=0
if [ ! -x "$keel_bin" ]; then
  keel_status="not available: ${keel_bin#"$repo"/} is not built"
fi

# run_one SYSTEM BINARY NAME ARGS ROUND: one fresh cluster, one workload, one JSON file.
run_one() {
  local system=$1 binary=$2 name=$3 args=$4 round=$5
  local out="$raw/$system-$name-r$round"
  if ! start_cluster "$system" "$binary"; then
    echo "  $system $name r$round: start failed: $start_error" >&2
    if [ "$system" = keel ] && [ "$keel_started" = 0 ]; then
      keel_status="not available: $start_error"
    else
      echo "$start_error" >"$out.err"
    fi
    return 0
  fi
  [ "$system" = keel ] && keel_started=1
  local target=""
  [ "$members" -gt 1 ] && target="--target-leader"
  # shellcheck disable=SC2086 # $args is a word list on purpose.
  # The outer timeout is a last resort against a hang: keel-bench's own --op-timeout and
  # watch drain timeouts end a run against a stuck server well before it.
  if timeout 600 "$bench" $args --endpoints "$endpoints" "${client_tls[@]}" $target \
    --duration "$duration" --json >"$out.json" 2>"$out.stderr"; then
    rm -f "$out.stderr"
    local ops
    ops=$(grep -o '"ops_per_sec":[0-9.]*' "$out.json" | cut -d: -f2 | cut -d. -f1 || true)
    echo "  $system $name r$round: $ops ops/s" >&2
  else
    mv "$out.stderr" "$out.err"
    rm -f "$out.json"
    echo "  $system $name r$round: failed: $(tail -n 1 "$out.err")" >&2
  fi
  stop_members
  rm -rf "$run_dir/$system-m"*
}

started=$SECONDS
# Other work on a shared machine skews results; the report records how busy it was.
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
for round in $(seq "$rounds"); do
  echo "compare.sh: round $round of $rounds" >&2
  for entry in "${workloads[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    run_one etcd "$etcd_bin" "$name" "$args" "$round"
    if [ "${keel_status%%:*}" != "not available" ]; then
      run_one keel "$keel_bin" "$name" "$args" "$round"
    fi
  done
done

echo "compare.sh: measuring the disk under $run_dir" >&2
"$bench" disk "$run_dir" --count 2000 --json >"$raw/disk.json" || rm -f "$raw/disk.json"

# Descriptive only: none of these may stop the script (a pipe closed early under pipefail
# counts as a failure), hence the "|| true".
etcd_version=$("$etcd_bin" --version 2>/dev/null | sed -n 1p || true)
cpu=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo 2>/dev/null | sed -n 1p || true)
machine="$(nproc) cores ($cpu), kernel $(uname -r), load average at start $load_at_start"
data_fs=$(df -T "$run_dir" 2>/dev/null | awk 'NR==2 {print $2 " on " $1}' || true)
[ "$quick" = 1 ] && durations="$duration per run (--quick)" || durations="$duration per run"
cat >"$raw/meta.json" <<EOF
{
  "date": "$date_tag",
  "host": "$(json_escape "$host")",
  "members": $members,
  "rounds": $rounds,
  "durations": "$(json_escape "$durations")",
  "etcd_version": "$(json_escape "$etcd_version")",
  "keel_status": "$(json_escape "$keel_status")",
  "machine": "$(json_escape "$machine")",
  "data_fs": "$(json_escape "$data_fs ($run_dir)")",
  "elapsed_secs": $((SECONDS - started))
}
EOF

"$bench" report --input "$raw" --output "$report"
echo "compare.sh: done in $((SECONDS - started)) s: $report" >&2
