# What the scripts in perf/ (and scripts/startup-stress.sh) share: sourced, never run.
#
#   perf_init NAME        the repository root becomes the working directory; sets $repo and
#                         the default binaries: $etcd_bin (Debian's etcd), $keel_bin, $bench
#                         and $keelctl (release builds in $CARGO_TARGET_DIR, else target/)
#   perf_usage            prints the calling script's header comment (its --help)
#   perf_bad_argument ARG reports an unknown argument with the usage, exits 2
#   perf_fail MESSAGE     prints "NAME: MESSAGE" on stderr, exits 1
#   perf_need BINARY...   builds keel-bench when it is missing; fails unless each BINARY is
#                         executable
#   free_port             a loopback port nothing listens on now
#   launch_member BINARY NAME DATA_DIR LOG CLIENT_URL PEER_URL CLUSTER [FLAG...]
#                         one member of the cluster CLUSTER in the background; pid into $pids
#   start_member BINARY NAME DATA_DIR LOG CLIENT_URL PEER_URL [FLAG...]
#                         a one-member cluster in the background; its pid is added to $pids
#   start_members BINARY COUNT DIR PREFIX SCHEME [FLAG...]
#                         COUNT members of one cluster on fresh data dirs DIR/PREFIX-m1...
#                         (logs beside them); sets $pids and $endpoints (comma-separated)
#   wait_ready ENDPOINTS SECONDS [BENCH FLAG...]
#                         polls until a put through keel-bench succeeds; 1 when a member of
#                         $pids exits (its exit code in $exit_code) or SECONDS pass
#   stop_members [--now]  SIGTERM to every process in $pids, SIGKILL after 10 s (at once with
#                         --now), and waits for them; empties $pids
# Scripts set `trap stop_members EXIT` themselves.

perf_init() {
  perf_name=$1
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  cd "$repo"
  etcd_bin=/usr/bin/etcd
  local target_dir=${CARGO_TARGET_DIR:-$repo/target}
  keel_bin=$target_dir/release/keel
  bench=$target_dir/release/keel-bench
  keelctl=$target_dir/release/keelctl
  pids=()
  endpoints=""
}

perf_usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }

perf_bad_argument() {
  echo "$perf_name: unknown argument $1" >&2
  perf_usage >&2
  exit 2
}

perf_fail() {
  echo "$perf_name: $*" >&2
  exit 1
}

perf_need() {
  [ -x "$bench" ] || cargo build --release -p keel-bench >&2
  local binary
  for binary in "$bench" "$@"; do
    [ -x "$binary" ] || perf_fail "$binary not found (etcd: scripts/install-test-deps.sh; Keel: cargo build --release -p keel)"
  done
}

# Python binds port 0 when it is there; otherwise a random high port with no listener.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
    return
  fi
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# launch_member BINARY NAME DATA_DIR LOG CLIENT_URL PEER_URL CLUSTER [FLAG...]: one member of
# the cluster CLUSTER (etcd's --initial-cluster) in the background; its pid is added to $pids.
launch_member() {
  local binary=$1 name=$2 data=$3 log=$4 client=$5 peer=$6 cluster=$7
  shift 7
  "$binary" --name "$name" --data-dir "$data" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "$cluster" "$@" >>"$log" 2>&1 &
  pids+=($!)
}

start_member() {
  local binary=$1 name=$2 data=$3 log=$4 client=$5 peer=$6
  shift 6
  launch_member "$binary" "$name" "$data" "$log" "$client" "$peer" "$name=$peer" "$@"
}

start_members() {
  local binary=$1 count=$2 dir=$3 prefix=$4 scheme=$5 i cluster=""
  shift 5
  local -a clients=() peers=()
  for i in $(seq "$count"); do
    clients+=("$scheme://127.0.0.1:$(free_port)")
    peers+=("http://127.0.0.1:$(free_port)")
    cluster="${cluster:+$cluster,}m$i=${peers[$((i - 1))]}"
  done
  for i in $(seq "$count"); do
    rm -rf "$dir/$prefix-m$i" "$dir/$prefix-m$i.log"
    launch_member "$binary" "m$i" "$dir/$prefix-m$i" "$dir/$prefix-m$i.log" \
      "${clients[$((i - 1))]}" "${peers[$((i - 1))]}" "$cluster" "$@"
  done
  endpoints=$(IFS=,; echo "${clients[*]}")
}

wait_ready() {
  local targets=$1 deadline=$((SECONDS + $2)) pid
  shift 2
  exit_code=""
  while :; do
    for pid in "${pids[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        exit_code=0
        wait "$pid" 2>/dev/null || exit_code=$?
        return 1
      fi
    done
    if "$bench" put --endpoints "$targets" "$@" --total 1 --json 2>/dev/null \
      | grep -q '"errors":0'; then
      return 0
    fi
    [ $SECONDS -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

stop_members() {
  local pid
  for pid in "${pids[@]}"; do
    if [ "${1:-}" = --now ]; then
      kill -9 "$pid" 2>/dev/null || true
    else
      kill "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
