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
  curl etcd-server etcd-client nats-server
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

# The issue-4 comparison needs JetStream with fsync before every acknowledgement
# (`sync_interval: always`), which bookworm's nats-server 2.9 lacks. Debian
# trixie's 2.10 build is a static Go binary that runs on bookworm: fetch that
# one .deb from Debian's archive (pinned by SHA-256) and unpack only the binary
# into /opt, leaving dpkg's bookworm package alone.
readonly NATS210_VERSION=2.10.27
readonly NATS210_DEB="nats-server_${NATS210_VERSION}-1+b2_amd64.deb"
readonly NATS210_SHA256=6d913ac987b78734c08537c2adeb1526cf735f216173a9170d94b185fcfe6f8a
readonly NATS210_DIR="/opt/dvote-peers/nats-server-${NATS210_VERSION}"
if [[ ! -x "$NATS210_DIR/nats-server" ]]; then
  [[ "$(dpkg --print-architecture)" == amd64 ]] || die "nats-server ${NATS210_VERSION}: only the amd64 build is pinned here"
  say "fetching nats-server ${NATS210_VERSION} from Debian trixie (for sync_interval: always)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  curl -fsS --retry 3 -m 300 -o "$tmp/$NATS210_DEB" "http://deb.debian.org/debian/pool/main/n/nats-server/$NATS210_DEB" \
    || die "could not download $NATS210_DEB from deb.debian.org"
  echo "$NATS210_SHA256  $tmp/$NATS210_DEB" | sha256sum -c --quiet - || die "$NATS210_DEB: SHA-256 mismatch"
  dpkg-deb -x "$tmp/$NATS210_DEB" "$tmp/x"
  mkdir -p "$NATS210_DIR"
  install -m 0755 "$tmp/x/usr/sbin/nats-server" "$NATS210_DIR/nats-server"
fi
"$NATS210_DIR/nats-server" --version >/dev/null || die "$NATS210_DIR/nats-server does not run"

pg_bin=/usr/lib/postgresql/15/bin
for tool in etcd etcdctl nats-server "$pg_bin/postgres" "$pg_bin/initdb" "$pg_bin/pgbench" psql; do
  command -v "$tool" >/dev/null || die "$tool is missing after the install; see /tmp/dvote-install-peers-apt.log"
done
say "ready: $(etcd --version 2>/dev/null | head -n1); nats-server $(nats-server --version 2>/dev/null | awk '{print $NF}') and $("$NATS210_DIR/nats-server" --version | awk '{print $NF}') in $NATS210_DIR; $("$pg_bin/postgres" --version)"
say "PostgreSQL binaries are in $pg_bin (not on PATH: initdb, pg_ctl, pgbench)"
