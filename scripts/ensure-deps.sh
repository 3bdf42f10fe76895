#!/usr/bin/env bash
# Installs what rcdc needs besides the Rust toolchain, only when missing:
#   etcd (Debian package etcd-server) — the meta store, started by tests and the demo;
#   protoc (Debian package protobuf-compiler) — needed to build the etcd-client crate.
set -euo pipefail

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
command -v etcd >/dev/null && command -v protoc >/dev/null
