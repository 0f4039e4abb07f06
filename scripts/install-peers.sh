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

APT_LOG=/tmp/dvote-install-peers-apt
# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

ensure_packages "${PACKAGES[@]}"

pg_bin=/usr/lib/postgresql/15/bin
for tool in etcd etcdctl nats-server "$pg_bin/postgres" "$pg_bin/initdb" "$pg_bin/pgbench" psql; do
  command -v "$tool" >/dev/null || die "$tool is missing after the install; see /tmp/dvote-install-peers-apt.log"
done
say "ready: $(etcd --version 2>/dev/null | head -n1); nats-server $(nats-server --version 2>/dev/null | awk '{print $NF}'); $("$pg_bin/postgres" --version)"
say "PostgreSQL binaries are in $pg_bin (not on PATH: initdb, pg_ctl, pgbench)"
