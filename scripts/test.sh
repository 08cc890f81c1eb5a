#!/usr/bin/env bash
# Runs every test of the workspace. The tests start their own redis-server
# processes on free loopback ports (never 6379), so redis-server must be
# installed: on Debian/Ubuntu this script installs it when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

redis_bin="${REDIS_SERVER_BIN:-redis-server}"
if ! command -v "$redis_bin" >/dev/null 2>&1; then
  echo "redis-server not found: installing it (Debian package redis-server)" >&2
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
  fi
  if ! command -v "$redis_bin" >/dev/null 2>&1; then
    echo "error: the tests need redis-server: install it (apt-get install redis-server, brew install redis) or set REDIS_SERVER_BIN" >&2
    exit 1
  fi
fi

cargo test --workspace --locked "$@"
