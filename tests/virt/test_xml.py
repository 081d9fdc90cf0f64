"""libvirt XML is built only in virt/xml.py; these golden files pin what it builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from cloudservice.virt import NetworkSpec, PoolSpec, VolumeSpec
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
