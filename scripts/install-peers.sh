#!/usr/bin/env bash
# Installs the peer systems that dvote's benches measure themselves against
# (shared PEERS.md): etcd, NATS, and PostgreSQL 15 with pgbench. Not needed to
# run dvote itself: the process runtime takes its Postgres from the npm
# package embedded-postgres, the docker runtime from its image.
#
# Idempotent; runs as root; no prompts. Services are installed, not started:
# the bench scripts start their own instances on private ports.
set -euo pipefail

# postgresql-contrib carries pgbench on bookworm; postgresql-client gives psql.
readonly PACKAGES=(
  etcd-server etcd-client nats-server
  postgresql-15 postgresql-client-15 postgresql-contrib
)

say() { printf 'install-peers: %s\n' "$*" >&2; }
die() { printf 'install-peers: error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "must run as root (try: sudo bash scripts/install-peers.sh)"
command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian bookworm only"

missing_packages() {
  local pkg status
  for pkg in "$@"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == installed ]] || printf '%s\n' "$pkg"
  done
}

has_candidate() {
  local pkg
  for pkg in "$@"; do
    # Not `apt-cache | grep -q`: grep's early exit would fail the pipe (pipefail).
    [[ "$(apt-cache policy "$pkg" 2>/dev/null)" =~ Candidate:\ [^\(] ]] || return 1
  done
}

# The packages' maintainer scripts would start etcd, NATS and a PostgreSQL
# cluster on their default ports; the benches start their own instances, so
# keep the defaults from running (invoke-rc.d honours policy-rc.d's exit 101).
install_packages() {
  local created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" \
    >/tmp/dvote-install-peers-apt.log 2>&1 || rc=$?
  if [[ "$created_policy" == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
  return "$rc"
}

mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
if [[ "${#missing[@]}" == 0 ]]; then
  say "packages present: ${PACKAGES[*]}"
else
  say "installing: ${missing[*]}"
  if ! has_candidate "${missing[@]}"; then
    say "apt-get update (package lists lack some of: ${missing[*]})"
    apt-get update -q >/tmp/dvote-install-peers-apt-update.log 2>&1 \
      || die "apt-get update failed; see /tmp/dvote-install-peers-apt-update.log"
  fi
  if ! install_packages "${missing[@]}"; then
    say "install failed with the current package lists; apt-get update and retry"
    apt-get update -q >/tmp/dvote-install-peers-apt-update.log 2>&1 \
      || die "apt-get update failed; see /tmp/dvote-install-peers-apt-update.log"
    install_packages "${missing[@]}" \
      || die "apt-get install ${missing[*]} failed; see /tmp/dvote-install-peers-apt.log"
  fi
fi

pg_bin=/usr/lib/postgresql/15/bin
for tool in etcd etcdctl nats-server "$pg_bin/postgres" "$pg_bin/initdb" "$pg_bin/pgbench" psql; do
  command -v "$tool" >/dev/null || die "$tool is missing after the install; see /tmp/dvote-install-peers-apt.log"
done
say "ready: $(etcd --version 2>/dev/null | head -n1); nats-server $(nats-server --version 2>/dev/null | awk '{print $NF}'); $("$pg_bin/postgres" --version)"
say "PostgreSQL binaries are in $pg_bin (not on PATH: initdb, pg_ctl, pgbench)"
