"""The guest OS image boots under libvirt (TCG): initramfs DHCP, switch_root, the agent.

The image is uploaded into a pool of its own (under /var/lib/cloudservice/pools: guests run
as libvirt's qemu user, who cannot reach a test's tmp_path) and booted from a qcow2 overlay,
as the fabric does. The serial log is where the guest says how far it got.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudservice.guestos._build import BuildResult
from cloudservice.virt import DomainSpec, Host, PoolSpec, PortForward, VolumeSpec

BOOT_TIMEOUT = 240.0  # TCG: the kernel, the initramfs and python3 on a loaded 2-core machine
POOLS = Path("/var/lib/cloudservice/pools")
SERIAL_LOGS = Path("/var/log/libvirt/qemu")
STARTING = "cloudservice-init: starting agent"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def host(libvirt_uri: str) -> Iterator[Host]:
    with Host(libvirt_uri) as connection:
        yield connection


def wait_for(log: Path, line: str, started: float) -> tuple[str, float]:
    text = ""
    while time.monotonic() - started < BOOT_TIMEOUT:
        text = log.read_text(errors="replace") if log.exists() else ""
        if line in text:
            return text, time.monotonic() - started
        if "FAILED:" in text or "Kernel panic" in text:
            break
        time.sleep(0.2)
    pytest.fail(f"no {line!r} in the serial log; it says:\n{text[-4000:]}", pytrace=False)


def test_image_boots_takes_a_dhcp_address_and_starts_the_agent(
    guest_image: BuildResult, host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"cs-guestos-{uuid.uuid4().hex[:8]}"
    image = Path(guest_image.entry.image_path)
    log = SERIAL_LOGS / f"{name}-serial.log"
    pool = host.ensure_pool(PoolSpec(name=name, path=str(POOLS / name)))
    try:
        base = host.upload_volume(
            pool.name,
            VolumeSpec(name="os.vhd", capacity=image.stat().st_size, format="vpc"),
            image,
        )
        overlay = host.create_overlay(
            pool.name, "instance.qcow2", base, guest_image.entry.virtual_size
        )
        host.define_domain(
            DomainSpec(
                name=name, vcpus=1, memory_mib=512, disk_path=overlay.path,
                serial_log=str(log), forwards=(PortForward(host_port=free_port(), guest_port=80),),
            )
        )  # fmt: skip
        started = time.monotonic()
        host.start_domain(name)
        text, seconds = wait_for(log, STARTING, started)
    finally:
        host.delete_domain(name)
        for volume in ("instance.qcow2", "os.vhd"):
            host.delete_volume(name, volume)
        host.delete_pool(name)
        log.unlink(missing_ok=True)
    lease = re.search(r"cloudservice-initramfs: dhcp eth0 (\S+) router (\S+)", text)
    assert lease, f"no DHCP lease in the serial log:\n{text[-4000:]}"
    assert lease.group(1) == "10.0.2.15/24"  # QEMU user-mode networking's first address
    assert "FAILED" not in text
    if guest_image.entry.agent_digest is None:  # this image has no agent: init says so
        assert "cloudservice-init: error: no agent in this image" in text
    with capsys.disabled():
        print(
            f"\n{guest_image.entry.name}: boot to {STARTING!r} in {seconds:.1f} s (TCG), "
            f"DHCP {lease.group(1)} via {lease.group(2)}"
        )
