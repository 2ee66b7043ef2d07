# Sourced by scripts/setup.sh and scripts/setup-guest.sh (which define say()).
# apt_install_missing <what> <package>...: installs those of the packages that are not installed, as
# root; says what is skipped when not root. Package scripts start no services (policy-rc.d), so the
# host's own Open vSwitch daemons stay down.
apt_install_missing() {
  local what="$1"
  shift
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "not root: skipping $what ($*; the lab needs root; the sim driver does not)"
    return 0
  fi
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  say "installing $what: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}
