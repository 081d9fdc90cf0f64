"""The shell scripts baked into a guest OS image: the initramfs's init and DHCP hook, the
root file system's init (PID 1 until it execs the agent), and the syslinux configuration.

Lines on the serial console start with `cloudservice-initramfs:` or `cloudservice-init:`.
"""

from __future__ import annotations

KERNEL_CMDLINE = "console=ttyS0,115200 panic=10 quiet"

SYSLINUX_CFG = f"""SERIAL 0 115200
DEFAULT cloudservice
PROMPT 0
TIMEOUT 0
LABEL cloudservice
  LINUX /vmlinuz
  INITRD /initrd.gz
  APPEND {KERNEL_CMDLINE}
"""

# The initramfs: busybox (static), the modules in /lib/modules with their load order.
INITRAMFS_INIT = r"""#!/bin/busybox sh
# cloudservice initramfs: load the modules, take eth0's address by DHCP, mount /dev/vda2 and
# switch_root into /usr/lib/cloudservice/init.
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
say() { echo "cloudservice-initramfs: $*"; }
uptime() { read -r up _ < /proc/uptime; echo "$up"; }
fail() {  # say why on the console and keep PID 1 alive (a dead PID 1 is a kernel panic)
    say "FAILED: $*"
    while :; do sleep 3600; done
}
wait_for() {  # up to 10 s: devices show up asynchronously
    i=0
    while [ ! -e "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -e "$1" ]
}
say "started at uptime $(uptime) s"
for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m.ko" || say "insmod $m failed"
done
say "modules loaded at uptime $(uptime) s"
ip link set lo up
if wait_for /sys/class/net/eth0; then
    ip link set eth0 up
    udhcpc -i eth0 -f -q -n -t 10 -T 1 -s /etc/udhcpc.script >/dev/null 2>&1 \
        || say "dhcp on eth0: no lease"
else
    say "no eth0"
fi
wait_for /dev/vda2 || fail "no /dev/vda2"
mkdir -p /newroot
mount -t ext4 -o rw,noatime /dev/vda2 /newroot || fail "cannot mount /dev/vda2"
[ -x /newroot/usr/lib/cloudservice/init ] || fail "no /usr/lib/cloudservice/init on /dev/vda2"
[ -s /etc/resolv.conf ] && cp /etc/resolv.conf /newroot/etc/resolv.conf
say "switching to /dev/vda2 at uptime $(uptime) s"
umount /sys
umount /proc
mount --move /dev /newroot/dev
exec switch_root /newroot /usr/lib/cloudservice/init
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
# busybox udhcpc hook: set the leased address, the default route and resolv.conf.
case "$1" in
    deconfig)
        ip addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
        : > /etc/resolv.conf
        for server in $dns; do echo "nameserver $server" >> /etc/resolv.conf; done
        [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
        echo "cloudservice-initramfs: dhcp $interface $ip/${mask:-24} router ${router%% *}" \
            > /dev/console
        ;;
esac
exit 0
"""

# The root file system's /usr/lib/cloudservice/init: no init system, the agent is PID 1.
GUEST_INIT = r"""#!/bin/sh
# cloudservice guest init, PID 1 after the initramfs: mount the API file systems, then
# exec the guest agent (python3 -m cloudservice_agent) as PID 1. No init system.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C.UTF-8 HOME=/root
mountpoint -q /proc || mount -t proc -o nosuid,nodev,noexec proc /proc
mountpoint -q /sys || mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mountpoint -q /dev || mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mountpoint -q /dev/pts || mount -t devpts -o nosuid,noexec,gid=5,mode=620 devpts /dev/pts
mountpoint -q /dev/shm || mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
mountpoint -q /run || mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mountpoint -q /tmp || mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
exec </dev/console >/dev/console 2>&1
# What udev would have made: /dev/fd, /dev/std*, /dev/virtio-ports/<name>.
ln -sfn /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
for port in /sys/class/virtio-ports/*; do
    [ -r "$port/name" ] || continue
    mkdir -p /dev/virtio-ports
    ln -sf "../${port##*/}" "/dev/virtio-ports/$(cat "$port/name")"
done
[ -s /etc/hostname ] && cat /etc/hostname > /proc/sys/kernel/hostname
# The host swaps the configuration and package media live; a drive whose door Linux locks
# while the agent reads it would refuse (nothing here answers QEMU's eject requests).
[ -w /proc/sys/dev/cdrom/lock ] && echo 0 > /proc/sys/dev/cdrom/lock
AGENT=/usr/lib/cloudservice/cloudservice_agent
read -r up _ < /proc/uptime
echo "cloudservice-init: starting agent at uptime $up s"
if [ ! -f "$AGENT/__main__.py" ]; then
    echo "cloudservice-init: error: no agent in this image ($AGENT/__main__.py is missing);" \
        "build an image with the agent: cloudservice os build --force"
elif ! command -v python3 >/dev/null 2>&1; then
    echo "cloudservice-init: error: python3 is missing from this image"
else
    export PYTHONPATH=/usr/lib/cloudservice
    exec python3 -m cloudservice_agent
    echo "cloudservice-init: error: cannot execute python3 -m cloudservice_agent"
fi
while :; do sleep 3600; done
"""
