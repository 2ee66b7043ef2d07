#!/usr/bin/env bash
# The lab's QEMU guests (docs/lab.md): Debian's qemu-system-x86 and busybox-static installed, a
# pinned Debian kernel unpacked (apt-get download + dpkg -x, never installed), and the guest's
# initramfs (busybox, the kernel's virtio modules, lab/guest/init) built once per content hash into
# the tool cache: $cache/guest -> $cache/guest-<hash>/{vmlinuz,initrd.img}. Idempotent; called by
# scripts/setup.sh, and can be run alone (as root for the packages).
set -euo pipefail

GUEST_KERNEL_PACKAGE="linux-image-6.1.0-50-cloud-amd64" # Debian bookworm's cloud kernel: small, virtio as modules
GUEST_KERNEL_VERSION="6.1.176-1"
GUEST_PACKAGES=(qemu-system-x86 busybox-static)
GUEST_MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${REFIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/refit}"
say() { printf 'setup-guest: %s\n' "$*" >&2; }
command -v apt-get >/dev/null && command -v dpkg >/dev/null || { say "no apt-get/dpkg: the lab's VMs need Debian's packages; skipped"; exit 0; }

# shellcheck source=scripts/apt-packages.sh
. "$here/scripts/apt-packages.sh"
apt_install_missing "the lab's QEMU guests' packages" "${GUEST_PACKAGES[@]}"
[ -f /usr/share/doc/busybox-static/copyright ] || { say "busybox-static is not installed: no guest built"; exit 0; }

kernel_dir="$cache/guest-kernel-$GUEST_KERNEL_VERSION"
if [ ! -f "$kernel_dir/.complete" ]; then
  say "unpacking $GUEST_KERNEL_PACKAGE $GUEST_KERNEL_VERSION for the lab's guests (apt-get download + dpkg -x, not installed)"
  tmp="$(mktemp -d)"
  chmod 755 "$tmp"
  if (cd "$tmp" && apt-get download -qq "$GUEST_KERNEL_PACKAGE=$GUEST_KERNEL_VERSION" 2>/dev/null); then
    rm -rf "$kernel_dir"
    mkdir -p "$kernel_dir"
    dpkg -x "$tmp"/"${GUEST_KERNEL_PACKAGE}"_*.deb "$kernel_dir"
    touch "$kernel_dir/.complete"
  else
    say "$GUEST_KERNEL_PACKAGE=$GUEST_KERNEL_VERSION could not be downloaded (apt-get update first?): the lab's VMs stay namespaces"
    rm -rf "$tmp"
    exit 0
  fi
  rm -rf "$tmp"
fi
release="${GUEST_KERNEL_PACKAGE#linux-image-}"
modules="$kernel_dir/lib/modules/$release/kernel"

# busybox-static's own cpio packs it (no cpio package needed).
# The initramfs is a function of busybox, the kernel and lab/guest/init: built again only when one changes.
busybox_version="$(dpkg-query -W -f='${Version}' busybox-static)"
hash="$( (echo "$busybox_version $GUEST_KERNEL_VERSION ${GUEST_MODULES[*]}"; cat "$here/lab/guest/init") | sha256sum | cut -c1-16)"
guest_dir="$cache/guest-$hash"
if [ ! -f "$guest_dir/.complete" ]; then
  say "building the lab's guest initramfs ($guest_dir)"
  rm -rf "$guest_dir"
  root="$(mktemp -d)"
  mkdir -p "$root"/{bin,proc,sys,dev,modules}
  cp /bin/busybox "$root/bin/busybox"
  for m in "${GUEST_MODULES[@]}"; do
    f="$(find "$modules" -name "$m.ko" | head -n1)"
    [ -n "$f" ] || { say "module $m not in $GUEST_KERNEL_PACKAGE"; exit 1; }
    cp "$f" "$root/modules/"
  done
  install -m 0755 "$here/lab/guest/init" "$root/init"
  mkdir -p "$guest_dir"
  (cd "$root" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -9) >"$guest_dir/initrd.img"
  cp "$kernel_dir/boot/vmlinuz-$release" "$guest_dir/vmlinuz"
  rm -rf "$root"
  touch "$guest_dir/.complete"
fi
ln -sfn "$guest_dir" "$cache/guest"
say "guest ready: $cache/guest/{vmlinuz,initrd.img}"
