"""libvirt XML, built in this one place by pure functions over the specs (golden-tested)."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET

from ._specs import NetworkSpec, PoolSpec, VolumeSpec

# libvirt's storage driver names VHD "vpc", as qemu does.


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


def volume_xml(spec: VolumeSpec) -> str:
    volume = ET.Element("volume", type="file")
    _text(volume, "name", spec.name)
    _text(volume, "capacity", str(spec.capacity), unit="bytes")
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
