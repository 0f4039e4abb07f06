# Shared by setup.sh and install-peers.sh: install Debian packages
# idempotently, with `apt-get update` only when needed, without letting the
# packages' maintainer scripts start services (we start our own).
# The caller defines say() and die() and sets APT_LOG (log file prefix).

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

# Maintainer scripts (docker.io, etcd, nats, postgresql) would start their
# daemons on default ports; invoke-rc.d honours policy-rc.d's exit 101.
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
    >"${APT_LOG}.log" 2>&1 || rc=$?
  if [[ "$created_policy" == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
  return "$rc"
}

# Install what is missing of "$@"; `apt-get update` only when the lists lack
# a package or an install from the current lists fails (stale lists).
ensure_packages() {
  local -a missing
  mapfile -t missing < <(missing_packages "$@")
  if [[ "${#missing[@]}" == 0 ]]; then
    say "packages present: $*"
    return 0
  fi
  say "installing: ${missing[*]}"
  if ! has_candidate "${missing[@]}"; then
    say "apt-get update (package lists lack some of: ${missing[*]})"
    apt-get update -q >"${APT_LOG}-update.log" 2>&1 || die "apt-get update failed; see ${APT_LOG}-update.log"
  fi
  if ! install_packages "${missing[@]}"; then
    say "install failed with the current package lists; apt-get update and retry"
    apt-get update -q >"${APT_LOG}-update.log" 2>&1 || die "apt-get update failed; see ${APT_LOG}-update.log"
    install_packages "${missing[@]}" || die "apt-get install ${missing[*]} failed; see ${APT_LOG}.log"
  fi
}
