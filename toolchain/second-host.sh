#!/usr/bin/env bash
# A second, isolated libvirtd ("host2") for tests, next to the system one (idempotent).
#
#   toolchain/second-host.sh start|stop|status|uri|down|up|exec CMD...
#
# host2 runs monolithic libvirtd + virtlogd (Debian 12 has no virtqemud) inside its own network
# namespace (`ip netns`, name $CS_HOST2_NETNS) and its own mount namespace (`unshare --mount`),
# where $CS_HOST2_DIR/{run,etc,lib,log,cache} are bind-mounted over /run, /etc/libvirt,
# /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt. The system libvirtd, its sockets,
# config, state, networks and cgroups are never touched. From the root namespace host2 answers on
#
#   qemu:///system?socket=$CS_HOST2_DIR/run/libvirt/libvirt-sock      (`second-host.sh uri`)
#
# A veth pair links the root namespace ($CS_HOST2_LINK .1, device $CS_HOST2_VETH) with host2
# (.2), and the root namespace routes $CS_HOST2_ROUTE (default 10.220.0.0/16) into host2: give
# host2's libvirt networks subnets inside that range and root can reach their bridges and guests.
# host2's default route points back to root, so its guests can reach the root namespace.
#
# `stop` destroys everything: domains, networks, daemons, the namespaces, the veth, the route and
# $CS_HOST2_DIR itself (set CS_HOST2_KEEP=1 to keep the directory for post-mortems).
set -euo pipefail

DIR=${CS_HOST2_DIR:-/tmp/cloudservice-host2}
NETNS=${CS_HOST2_NETNS:-cs-host2}
VETH=${CS_HOST2_VETH:-cs-host2-root}       # root side; the host2 side is called "uplink"
LINK=${CS_HOST2_LINK:-10.219.255.0}        # a /30: .1 root side, .2 host2 side
ROUTE=${CS_HOST2_ROUTE:-10.220.0.0/16}     # routed from root into host2
ROOT_IP=${LINK%.*}.$(( ${LINK##*.} + 1 ))
NS_IP=${LINK%.*}.$(( ${LINK##*.} + 2 ))
SOCK=$DIR/run/libvirt/libvirt-sock
URI="qemu:///system?socket=$SOCK"
SELF=$(readlink -f "$0")

say() { echo "second-host: $*" >&2; }
die() { say "$*"; exit 1; }

case "$DIR" in /*/?*) ;; *) die "CS_HOST2_DIR must be an absolute path below / (got '$DIR')" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root"

# A pid from a pid file, when that process is alive (not a zombie: init here does not reap).
live_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    [ "$(ps -o stat= -p "$pid" | cut -c1)" != Z ]
    echo "$pid"
}
daemon_pid() { live_pid "$DIR/run/libvirtd-h2.pid"; }
netns_exists() { ip netns list | grep -qx "$NETNS\( (id: [0-9]*)\)\?"; }
answers() { timeout 20 virsh -q -c "$URI" version >/dev/null 2>&1; }

# Configuration: copies of the system's *.conf files, no domains, networks, pools or hooks.
seed_config() {
    mkdir -p "$DIR"/{run,etc,lib,log/qemu,cache,bin}
    chmod 0755 "$DIR" "$DIR"/{run,lib,log,cache}
    if [ ! -e "$DIR/etc/.seeded" ]; then
        cp -a /etc/libvirt/*.conf "$DIR/etc/"
        [ -d /etc/libvirt/nwfilter ] && cp -a /etc/libvirt/nwfilter "$DIR/etc/"
        mkdir -p "$DIR/etc/qemu/networks/autostart" "$DIR/etc/storage/autostart" \
                 "$DIR/etc/secrets" "$DIR/etc/hooks"
        chmod 0700 "$DIR/etc/secrets"
        # Log to files inside host2 (the system one logs to syslog/stderr).
        cat >> "$DIR/etc/libvirtd.conf" <<'EOF'

# --- cloudservice host2 ---
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
        cat >> "$DIR/etc/virtlogd.conf" <<'EOF'

# --- cloudservice host2 ---
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
EOF
        # Reuse the system's QEMU capability cache (read-only copy): saves the first probe.
        if [ "${CS_HOST2_COPY_CAPS:-1}" = 1 ] && [ -d /var/cache/libvirt/qemu/capabilities ]; then
            mkdir -p "$DIR/cache/qemu"
            cp -a /var/cache/libvirt/qemu/capabilities "$DIR/cache/qemu/" 2>/dev/null || true
        fi
        # libvirt inserts its LIBVIRT_* jumps at the top of FORWARD when it first starts a
        # network, and a NAT network REJECTs new connections into its bridge: this hook (run by
        # host2's libvirtd, in host2's namespaces) puts our accept for root->guest back on top.
        cat > "$DIR/etc/hooks/network" <<HOOK
#!/bin/sh
[ "\$2" = started ] || exit 0
iptables -w -D FORWARD -i uplink -d $ROUTE -j ACCEPT 2>/dev/null
iptables -w -I FORWARD 1 -i uplink -d $ROUTE -j ACCEPT
exit 0
HOOK
        chmod 0755 "$DIR/etc/hooks/network"
        touch "$DIR/etc/.seeded"
    fi
    # Distinct process names, so `pgrep -x libvirtd|virtlogd` (setup-libvirt.sh) keeps meaning
    # the system daemons.
    ln -sfn "$(command -v libvirtd)" "$DIR/bin/libvirtd-h2"
    ln -sfn "$(command -v virtlogd)" "$DIR/bin/virtlogd-h2"
}

setup_netns() {
    netns_exists || ip netns add "$NETNS"
    ip -n "$NETNS" link set lo up
    if ! ip link show "$VETH" >/dev/null 2>&1; then
        ip link add "$VETH" type veth peer name uplink netns "$NETNS"
    fi
    ip addr replace "$ROOT_IP/30" dev "$VETH"
    ip link set "$VETH" up
    ip -n "$NETNS" addr replace "$NS_IP/30" dev uplink
    ip -n "$NETNS" link set uplink up
    ip route replace "$ROUTE" via "$NS_IP" dev "$VETH"
    ip -n "$NETNS" route replace default via "$ROOT_IP" dev uplink
    # New connections from root into host2's networks (NAT networks reject them otherwise).
    ip netns exec "$NETNS" iptables -w -C FORWARD -i uplink -d "$ROUTE" -j ACCEPT 2>/dev/null ||
        ip netns exec "$NETNS" iptables -w -I FORWARD 1 -i uplink -d "$ROUTE" -j ACCEPT
}

# Runs inside the new mount namespace (and host2's network namespace, with /sys remounted by
# `ip netns exec` so /sys/class/net shows host2's devices).
inner() {
    mount --bind "$DIR/run" /run
    mount --bind "$DIR/etc" /etc/libvirt
    mount --bind "$DIR/lib" /var/lib/libvirt
    mount --bind "$DIR/log" /var/log/libvirt
    mount --bind "$DIR/cache" /var/cache/libvirt
    mkdir -p /run/libvirt
    # After `down`, virtlogd still holds the running guests' logs: keep it.
    live_pid /run/virtlogd-h2.pid >/dev/null || "$DIR/bin/virtlogd-h2" -d -p /run/virtlogd-h2.pid
    "$DIR/bin/libvirtd-h2" -d -p /run/libvirtd-h2.pid
}

start() {
    seed_config
    setup_netns
    if daemon_pid >/dev/null; then
        answers && { say "already running: $URI"; return 0; }
    else
        rm -f "$SOCK" "$DIR"/run/libvirt/libvirt*-sock "$DIR"/run/libvirtd-h2.pid
        live_pid "$DIR/run/virtlogd-h2.pid" >/dev/null ||
            rm -f "$DIR"/run/libvirt/virtlogd*-sock "$DIR"/run/virtlogd-h2.pid
        local t0=$SECONDS
        # A clean environment (no LIBVIRT_*, no caller cwd); note the daemons still inherit the
        # caller's cgroups.
        (cd / && ip netns exec "$NETNS" unshare --mount --propagation slave -- \
            env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 CS_HOST2_DIR="$DIR" \
            bash "$SELF" __inner) || die "starting the daemons failed"
        say "daemons started in $((SECONDS - t0)) s"
    fi
    local t1=$SECONDS
    for _ in $(seq 90); do answers && break; sleep 1; done
    answers || die "host2 libvirtd did not answer on $URI within 90 s (see $DIR/log/libvirtd.log)"
    say "host2 answers after $((SECONDS - t1)) s: $URI"
}

stop() {
    if daemon_pid >/dev/null && answers; then
        local dom net pool
        for dom in $(virsh -q -c "$URI" list --name 2>/dev/null); do
            virsh -q -c "$URI" destroy "$dom" >/dev/null 2>&1 || true
        done
        for net in $(virsh -q -c "$URI" net-list --name 2>/dev/null); do
            virsh -q -c "$URI" net-destroy "$net" >/dev/null 2>&1 || true
        done
        for pool in $(virsh -q -c "$URI" pool-list --name 2>/dev/null); do
            virsh -q -c "$URI" pool-destroy "$pool" >/dev/null 2>&1 || true
        done
    fi
    # Every process of host2 lives in its network namespace: libvirtd, virtlogd, dnsmasq, qemu.
    local pids pid
    if netns_exists; then
        for sig in TERM TERM TERM TERM TERM KILL; do
            pids=$(ip netns pids "$NETNS" 2>/dev/null || true)
            [ -z "$pids" ] && break
            for pid in $pids; do kill -"$sig" "$pid" 2>/dev/null || true; done
            sleep 1
        done
        pids=$(ip netns pids "$NETNS" 2>/dev/null || true)
        [ -z "$pids" ] || say "still alive in $NETNS: $pids"
        ip netns del "$NETNS"
    fi
    ip route del "$ROUTE" via "$NS_IP" 2>/dev/null || true
    ip link del "$VETH" 2>/dev/null || true
    if [ "${CS_HOST2_KEEP:-0}" = 1 ]; then
        say "stopped; kept $DIR"
    else
        rm -rf --one-file-system "$DIR"
        say "stopped; removed $DIR"
    fi
}

status() {
    local pid
    if pid=$(daemon_pid) && answers; then
        echo "running: libvirtd pid $pid, netns $NETNS, $URI"
        virsh -c "$URI" list --all
        virsh -c "$URI" net-list --all
        return 0
    fi
    echo "not running (netns: $(netns_exists && echo present || echo absent), dir: $([ -d "$DIR" ] && echo present || echo absent))"
    return 3
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    uri) echo "$URI" ;;
    # The host stops answering, as behind a broken link: its socket is moved aside (libvirtd and
    # its guests keep running); `up` puts it back.
    down) mv "$SOCK" "$SOCK.down" && say "host2 does not answer" ;;
    up) mv "$SOCK.down" "$SOCK" && answers && say "host2 answers again" ;;
    # Run a command inside host2's mount and network namespaces (e.g. to look at its /run).
    exec) shift; pid=$(daemon_pid) || die "not running"; exec nsenter -t "$pid" -m -n -- "$@" ;;
    __inner) inner ;;
    *) echo "usage: $0 start|stop|status|uri|down|up|exec CMD..." >&2; exit 2 ;;
esac
