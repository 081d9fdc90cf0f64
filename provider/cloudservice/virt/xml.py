"""libvirt XML, built in this one place by pure functions over the specs (golden-tested)."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET

from ._specs import AttachedDisk, DomainSpec, NetworkInterface, NetworkSpec, PoolSpec, VolumeSpec

# libvirt's storage driver names VHD "vpc", as qemu does.
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
METADATA_NS = "https://cloudservice.invalid/xmlns/instance/1"
ET.register_namespace("qemu", QEMU_NS)
ET.register_namespace("cloudservice", METADATA_NS)


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element


def _render(root: ET.Element) -> str:
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def pool_xml(spec: PoolSpec) -> str:
    pool = ET.Element("pool", type="dir")
    _text(pool, "name", spec.name)
    target = ET.SubElement(pool, "target")
    _text(target, "path", spec.path)
    return _render(pool)


def volume_xml(spec: VolumeSpec, allocation: int | None = None) -> str:
    """A file volume. Without `allocation` libvirt allocates the whole capacity up front (raw
    files are fallocated); `allocation=0` makes a raw volume a hole that reads as zeros."""
    volume = ET.Element("volume", type="file")
    _text(volume, "name", spec.name)
    _text(volume, "capacity", str(spec.capacity), unit="bytes")
    if allocation is not None:
        _text(volume, "allocation", str(allocation), unit="bytes")
    target = ET.SubElement(volume, "target")
    ET.SubElement(target, "format", type=spec.format)
    if spec.backing_path:
        backing = ET.SubElement(volume, "backingStore")
        _text(backing, "path", spec.backing_path)
        ET.SubElement(backing, "format", type=spec.backing_format or "raw")
    return _render(volume)


def network_xml(spec: NetworkSpec) -> str:
    subnet = ipaddress.ip_network(spec.cidr)
    hosts = list(subnet.hosts())
    network = ET.Element("network")
    _text(network, "name", spec.name)
    if spec.mode == "nat":
        ET.SubElement(network, "forward", mode="nat")
    ET.SubElement(network, "bridge", name=spec.bridge, stp="on", delay="0")
    ip = ET.SubElement(network, "ip", address=str(hosts[0]), netmask=str(subnet.netmask))
    if spec.dhcp:
        dhcp = ET.SubElement(ip, "dhcp")
        ET.SubElement(dhcp, "range", start=str(hosts[1]), end=str(hosts[-1]))
    return _render(network)


def domain_xml(spec: DomainSpec) -> str:
    domain = ET.Element("domain", type=spec.domain_type)
    _text(domain, "name", spec.name)
    ET.SubElement(domain, "metadata").append(_metadata_element(spec.metadata))
    _text(domain, "memory", str(spec.memory_mib), unit="MiB")
    _text(domain, "vcpu", str(spec.vcpus))
    os_element = ET.SubElement(domain, "os")
    _text(os_element, "type", "hvm", arch="x86_64", machine="pc")
    ET.SubElement(os_element, "boot", dev="hd")
    ET.SubElement(ET.SubElement(domain, "features"), "acpi")
    _text(domain, "on_poweroff", "destroy")
    _text(domain, "on_reboot", "restart")
    _text(domain, "on_crash", "destroy")
    devices = ET.SubElement(domain, "devices")
    _disk(devices, spec)
    for attached in spec.disks:
        devices.append(attached_disk_element(attached))
    for interface in spec.interfaces:
        _interface(devices, interface)
    _serial_console(devices, spec.serial_log)
    for channel in spec.channels:
        _channel(devices, channel)
    ET.SubElement(ET.SubElement(devices, "video"), "model", type="none")
    ET.SubElement(devices, "memballoon", model="none")
    if spec.forwards:
        _user_network(domain, spec)
    return _render(domain)


def _metadata_element(metadata: dict[str, str], namespace: str = METADATA_NS) -> ET.Element:
    element = ET.Element(f"{{{namespace}}}instance" if namespace else "instance")
    for key, value in sorted(metadata.items()):
        element.set(key, value)
    return element


def metadata_xml(metadata: dict[str, str]) -> str:
    """The domain's cloudservice metadata element, as `virDomainSetMetadata` takes it: without
    its namespace, which libvirt adds from the call's own arguments."""
    return _render(_metadata_element(metadata, namespace=""))


def _disk(devices: ET.Element, spec: DomainSpec) -> None:
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type=spec.disk_format)
    ET.SubElement(disk, "source", file=spec.disk_path)
    ET.SubElement(disk, "target", dev="vda", bus="virtio")


def attached_disk_element(spec: AttachedDisk) -> ET.Element:
    """A disk beside the boot disk; also what `update-device` gets to swap a cdrom's medium."""
    disk = ET.Element("disk", type="file", device=spec.device)
    ET.SubElement(disk, "driver", name="qemu", type=spec.format)
    ET.SubElement(disk, "source", file=spec.path)
    bus = "virtio" if spec.target.startswith("vd") else "ide"
    ET.SubElement(disk, "target", dev=spec.target, bus=bus)
    if spec.readonly:
        ET.SubElement(disk, "readonly")
    return disk


def disk_xml(spec: AttachedDisk) -> str:
    return _render(attached_disk_element(spec))


def _interface(devices: ET.Element, spec: NetworkInterface) -> None:
    interface = ET.SubElement(devices, "interface", type="network")
    ET.SubElement(interface, "mac", address=spec.mac)
    ET.SubElement(interface, "source", network=spec.network)
    ET.SubElement(interface, "model", type="virtio")


def _channel(devices: ET.Element, name: str) -> None:
    # A UNIX socket libvirt places itself: what virDomainOpenChannel can stream from.
    channel = ET.SubElement(devices, "channel", type="unix")
    ET.SubElement(channel, "source", mode="bind")
    ET.SubElement(channel, "target", type="virtio", name=name)


def dhcp_host_xml(mac: str, address: str, name: str) -> str:
    return _render(ET.Element("host", mac=mac, name=name, ip=address))


def _serial_console(devices: ET.Element, log_path: str) -> None:
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "log", file=log_path, append="off")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")


def _user_network(domain: ET.Element, spec: DomainSpec) -> None:
    # A PCI slot of its own: libvirt fills the low slots with the devices it knows about.
    forwards = ",".join(
        f"hostfwd={f.protocol}:127.0.0.1:{f.host_port}-:{f.guest_port}" for f in spec.forwards
    )
    commandline = ET.SubElement(domain, f"{{{QEMU_NS}}}commandline")
    for arg in (
        "-netdev",
        f"user,id=cs0,{forwards}",
        "-device",
        "virtio-net-pci,netdev=cs0,addr=0x10",
    ):
        ET.SubElement(commandline, f"{{{QEMU_NS}}}arg", value=arg)
