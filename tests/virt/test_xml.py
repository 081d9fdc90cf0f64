"""libvirt XML is built only in virt/xml.py; these golden files pin what it builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from cloudservice.virt import (
    AttachedDisk,
    DomainSpec,
    NetworkInterface,
    NetworkSpec,
    PoolSpec,
    VolumeSpec,
)
from cloudservice.virt import xml as virt_xml

GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "pool.xml": lambda: virt_xml.pool_xml(PoolSpec(name="cs-dev-pool", path="/var/lib/cs/dev")),
    "volume-raw.xml": lambda: virt_xml.volume_xml(VolumeSpec(name="page.html", capacity=91)),
    "volume-overlay.xml": lambda: virt_xml.volume_xml(
        VolumeSpec(
            name="web-0.qcow2",
            capacity=2 * 1024**3,
            format="qcow2",
            backing_path="/var/lib/cs/dev/base.vhd",
            backing_format="vpc",
        )
    ),
    "network-nat.xml": lambda: virt_xml.network_xml(
        NetworkSpec(name="cs-dev-net", cidr="10.213.0.0/24")
    ),
    "network-isolated.xml": lambda: virt_xml.network_xml(
        NetworkSpec(name="cs-e2e-net", cidr="10.214.8.0/28", mode="isolated", dhcp=False)
    ),
    # A Web role instance: on the service network, configuration and package media, the
    # agent's status channel (docs/guest.md).
    "domain-web-instance.xml": lambda: virt_xml.domain_xml(
        DomainSpec(
            name="cs-dev-web-0",
            vcpus=1,
            memory_mib=768,
            disk_path="/var/lib/cs/dev/cs-dev-web-0.qcow2",
            serial_log="/var/log/libvirt/qemu/cs-dev-web-0-serial.log",
            interfaces=(NetworkInterface(network="cs-dev-net", mac="52:54:00:0a:0b:0c"),),
            disks=(
                AttachedDisk(path="/var/lib/cs/dev/cfg-1.raw", target="hdc", device="cdrom"),
                AttachedDisk(path="/var/lib/cs/dev/pkg.raw", target="hdd", device="cdrom"),
            ),
            channels=("org.cloudservice.agent.0",),
            metadata={"role": "cs-dev-web", "updateDomain": "0"},
        )
    ),
    "dhcp-host.xml": lambda: virt_xml.dhcp_host_xml("52:54:00:0a:0b:0c", "10.213.0.10", "web-0"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_xml_matches_golden(name: str) -> None:
    assert CASES[name]() == (GOLDEN / name).read_text()


def test_network_bridge_name_fits_linux_interface_limit() -> None:
    spec = NetworkSpec(name="a-very-long-network-name-indeed", cidr="10.0.0.0/24")
    assert len(spec.bridge) <= 15


@pytest.mark.parametrize(
    ("cidr", "message"),
    [("10.0.0.1/24", "host bits set"), ("fd00::/64", "IPv4"), ("10.0.0.0/30", "/29 or larger")],
)
def test_network_rejects_bad_subnets(cidr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetworkSpec(name="n", cidr=cidr)


def test_pool_path_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="must be absolute"):
        PoolSpec(name="p", path="relative/dir")
