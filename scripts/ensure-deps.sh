#!/usr/bin/env bash
# Installs what rcdc needs besides the Rust toolchain, only when missing:
#   etcd (Debian package etcd-server) — the meta store, started by tests and the demo;
#   protoc (Debian package protobuf-compiler) — needed to build the etcd-client crate.
set -euo pipefail

#   schemathesis (PyPI, into target/tools/venv) — only with --test-tools: the API test runs
#   TiCDC's OpenAPI spec through it;
#   chromium (Debian package chromium) — only with --test-tools: tests/dashboard.rs renders the
#   web dashboard in headless Chromium.
cd "$(dirname "$0")/.."
want_tools=false
[ "${1:-}" = "--test-tools" ] && want_tools=true
venv=target/tools/venv

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
if $want_tools; then
  [ -x /usr/bin/chromium ] || missing+=(chromium)
fi
if $want_tools && [ ! -x "$venv/bin/schemathesis" ]; then
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
fi

install_tools() {
  $want_tools || return 0
  [ -x "$venv/bin/schemathesis" ] && return 0
  echo "installing schemathesis into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis==4.32.5'
}

if [ ${#missing[@]} -eq 0 ]; then
  install_tools
  exit 0
fi

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
if $want_tools; then [ -x /usr/bin/chromium ]; fi
install_tools
