"""Which instances on a host are a role's: never another role's that took the same name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudservice.fabric._instances import instance_names_on_host
from cloudservice.virt import DomainSpec, Host, PoolSpec


@pytest.fixture
def pool(host: Host, tmp_path: Path) -> Iterator[PoolSpec]:
    spec = PoolSpec(name=f"cs-test-{uuid.uuid4().hex[:8]}", path=str(tmp_path / "pool"))
    host.ensure_pool(spec)
    yield spec
    for volume in list(Path(spec.path).glob("*")):
        host.delete_volume(spec.name, volume.name)
    host.delete_pool(spec.name)


def test_a_domain_on_another_roles_disks_is_not_ours(
    host: Host, pool: PoolSpec, tmp_path: Path
) -> None:
    role = f"cs-test-{uuid.uuid4().hex[:6]}"
    defined = []
    try:
        for index, layer in ((0, f"{role}-l0.vhd"), (1, f"{role}-os-l0.vhd")):
            name = f"{role}-{index}"
            host.define_domain(
                DomainSpec(
                    name=name,
                    vcpus=1,
                    memory_mib=64,
                    disk_path=str(tmp_path / f"{name}.qcow2"),
                    serial_log=str(tmp_path / f"{name}.log"),
                    metadata={"layer": layer},
                )
            )
            defined.append(name)
        # An overlay left by a refresh that dropped its instance, with no domain: ours.
        host.upload_bytes(pool.name, f"{role}-2.qcow2", b"\0" * 512)
        names = instance_names_on_host(
            host, pool.name, role, [f"{role}-0", f"{role}-1"], {f"{role}-l0.vhd"}.__contains__
        )
        assert names == {f"{role}-0", f"{role}-2"}
    finally:
        for name in defined:
            host.delete_domain(name)
