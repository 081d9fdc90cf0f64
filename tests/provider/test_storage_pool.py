"""cloudservice:index:StoragePool through the provider."""

from __future__ import annotations

from pathlib import Path

from cloudservice.resources.provider import CloudServiceProvider
from cloudservice.virt import Host
from pulumi.provider.experimental.provider import PropertyDiffKind

from .conftest import Driver


def test_pool_lifecycle(
    provider: CloudServiceProvider, host: Host, tmp_path: Path, unique: str
) -> None:
    pool = Driver(provider, "cloudservice:index:StoragePool")
    inputs = pool.checked({"name": unique, "path": str(tmp_path / "p")})
    assert pool.create(inputs, preview=True)[0] == unique
    assert host.pool(unique) is None

    resource_id, created = pool.create(inputs)
    try:
        assert created.values == {**inputs, "active": True}
        assert pool.read(resource_id, created.values)[0] == unique
        moved = pool.diff(created.values, {**inputs, "path": str(tmp_path / "q")})
        assert moved.replaces == ["path"] and moved.delete_before_replace
        assert moved.detailed_diff["path"].kind == PropertyDiffKind.UPDATE_REPLACE
    finally:
        pool.delete(resource_id, created.values)
    assert host.pool(unique) is None
    assert pool.read(resource_id, created.values)[0] == ""


def test_relative_pool_path_is_a_check_failure(provider: CloudServiceProvider) -> None:
    pool = Driver(provider, "cloudservice:index:StoragePool")
    failures = pool.check({"name": "p", "path": "pools/dev"}).failures
    assert [(f.property, "absolute" in f.reason) for f in failures] == [("path", True)]
