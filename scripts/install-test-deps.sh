#!/usr/bin/env bash
# Installs what Keel's tests need beyond the Rust toolchain, idempotently:
#   - Debian's etcd-server and etcd-client (upstream etcd 3.4 and etcdctl), for the
#     side-by-side compatibility tests and the perf/ comparisons;
#   - git and a C compiler, which glommio's build script needs, and make, which builds
#     jemalloc (the server's allocator);
#   - protoc (Debian's protobuf-compiler), which the build script of the third-party
#     `etcd-client` crate needs (a dev-dependency of the compatibility tests; Keel itself
#     compiles its .proto files with protox and needs no protoc).
# Nothing is installed when everything is already there.
set -euo pipefail

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-test-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# policy-rc.d keeps the etcd-server package from starting a system etcd on port 2379.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  remove_policy=1
fi
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
if [ "${remove_policy:-0}" = 1 ]; then
  $sudo rm -f /usr/sbin/policy-rc.d
fi
# If a service manager started the packaged etcd anyway, stop it: tests pick their own ports,
# but a stray system etcd would hold the default 2379 a user expects Keel to take.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  $sudo systemctl stop etcd || true
  $sudo systemctl disable etcd || true
fi
