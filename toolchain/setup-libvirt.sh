#!/usr/bin/env bash
# Make a local libvirtd with QEMU ready (idempotent): install the Debian packages that are
# missing, then start virtlogd and libvirtd when they are not running (no systemd here), and
# the `default` NAT network. Whether KVM really works is probed by `cloudservice host check`.
set -euo pipefail
say() { echo "setup-libvirt: $*" >&2; }

PACKAGES=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils libvirt-dev pkg-config
          dnsmasq-base iptables busybox-static cpio kmod xorriso syslinux-common extlinux
          mtools dosfstools libvhdi-utils python3-libvhdi mmdebstrap e2fsprogs haproxy)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { say "missing packages ${missing[*]}: run as root or install them"; exit 1; }
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Without udev, /dev/kvm stays root-only; udev on Debian makes it root:kvm 0660. libvirt checks
# whether its qemu user can open it, and when that answer differs from its root-run probe it
# throws away its capability cache on every call (about 30 s per domain define).
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

# Daemons started by hand: there is no systemd. Reaped zombies of earlier runs don't count.
alive() { for pid in $(pgrep -x "$1"); do [ "$(ps -o stat= -p "$pid" | cut -c1)" != Z ] && return 0; done; return 1; }
if ! alive virtlogd; then say "starting virtlogd"; virtlogd -d; fi
if ! alive libvirtd; then say "starting libvirtd"; libvirtd -d; fi

for _ in $(seq 60); do
    virsh -c qemu:///system version >/dev/null 2>&1 && break
    sleep 1
done
virsh -c qemu:///system version >/dev/null 2>&1 || { say "libvirtd did not answer on qemu:///system within 60 s"; exit 1; }
say "libvirtd answers on qemu:///system"
