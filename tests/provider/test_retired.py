"""The first release's StoragePool, Network and Volume: refused in programs, deletable in stacks."""

from __future__ import annotations

import uuid
from pathlib import Path

from cloudservice.resources.provider import CloudServiceProvider
from cloudservice.virt import Host, NetworkSpec, PoolSpec

from .conftest import Driver

TOKENS = ("StoragePool", "Network", "Volume")


def test_a_program_declaring_one_gets_one_error_saying_what_to_use(
    provider: CloudServiceProvider,
) -> None:
    for kind in TOKENS:
        response = Driver(provider, f"cloudservice:index:{kind}").check({"name": "x"})
        (failure,) = response.failures
        assert "is retired" in failure.reason and "pulumi-libvirt" in failure.reason


def test_deleting_a_network_removes_it_and_a_pool_is_left_for_pulumi_libvirt(
    provider: CloudServiceProvider, host: Host, tmp_path: Path
) -> None:
    name = f"cs-t{uuid.uuid4().hex[:8]}"
    pool = host.ensure_pool(PoolSpec(name=f"{name}-pool", path=str(tmp_path / "pool")))
    network = host.ensure_network(
        NetworkSpec(name=f"{name}-net", cidr=f"10.216.{uuid.uuid4().int % 250}.0/24")
    )
    try:
        Driver(provider, "cloudservice:index:Network").delete(network.name, {"name": network.name})
        assert host.network(network.name) is None
        Driver(provider, "cloudservice:index:StoragePool").delete(pool.name, {"name": pool.name})
        assert host.pool(pool.name) is not None  # released, not destroyed
    finally:
        host.delete_network(network.name)
        host.delete_pool(pool.name)
