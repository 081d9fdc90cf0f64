"""The libvirt driver against the real libvirtd that `make setup` starts."""

from __future__ import annotations

import filecmp
import hashlib
import io
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudservice.virt import (
    Host,
    HostUnavailable,
    NetworkSpec,
    ObjectExists,
    OperationFailed,
    PoolSpec,
    VolumeSpec,
)


@pytest.fixture
def pool(host: Host, tmp_path: Path) -> Iterator[PoolSpec]:
    spec = PoolSpec(name=f"cs-test-{uuid.uuid4().hex[:8]}", path=str(tmp_path / "pool"))
    host.ensure_pool(spec)
    yield spec
    for volume in list(Path(spec.path).glob("*")):
        host.delete_volume(spec.name, volume.name)
    host.delete_pool(spec.name)


def _download(host: Host, pool: str, name: str) -> bytes:
    sink = io.BytesIO()
    host.download_volume(pool, name, sink)
    return sink.getvalue()


def test_pool_is_created_running_and_adopted_again(host: Host, pool: PoolSpec) -> None:
    info = host.pool(pool.name)
    assert info is not None and info.active and info.path == pool.path
    assert Path(pool.path).is_dir()
    assert host.ensure_pool(pool) == info  # same name and path: adopted, not an error


def test_pool_with_same_name_and_other_path_is_refused(host: Host, pool: PoolSpec) -> None:
    with pytest.raises(ObjectExists, match="already exists with path"):
        host.ensure_pool(PoolSpec(name=pool.name, path="/var/tmp/elsewhere"))


def test_upload_streams_the_bytes_as_they_are(host: Host, pool: PoolSpec, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4099  # not a multiple of any block size
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    info = host.upload_volume(pool.name, VolumeSpec(name="payload", capacity=len(payload)), source)
    assert info.capacity == len(payload)
    assert _download(host, pool.name, "payload") == payload


def test_overwrite_with_a_smaller_file_keeps_name_and_path(
    host: Host, pool: PoolSpec, tmp_path: Path
) -> None:
    big, small = tmp_path / "big", tmp_path / "small"
    big.write_bytes(b"x" * 10000)
    small.write_bytes(b"tiny")
    first = host.upload_volume(pool.name, VolumeSpec(name="v", capacity=10000), big)
    second = host.overwrite_volume(pool.name, VolumeSpec(name="v", capacity=4), small)
    assert second.path == first.path and second.capacity == 4
    assert _download(host, pool.name, "v") == b"tiny"


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)}: {done.stderr or done.stdout}"


def test_sparse_upload_sends_only_the_data_of_a_qcow2_layer(
    host: Host, pool: PoolSpec, tmp_path: Path
) -> None:
    # The base sits in the pool, so the layer's backing is reachable there, as on a host.
    base_source = tmp_path / "base.raw"
    with open(base_source, "wb") as writer:
        writer.truncate(64 * 1024 * 1024)
        writer.write(b"\x11" * 65536)
    base = host.upload_volume(
        pool.name, VolumeSpec(name="base.raw", capacity=64 * 1024 * 1024), base_source
    )
    layer = tmp_path / "layer.qcow2"
    _run(
        "qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on",
        "-b", base.path, "-F", "raw", str(layer),
    )  # fmt: skip
    _run("qemu-io", "-c", "write -P 0x22 8k 4k", "-c", "write -P 0x33 40M 4k", str(layer))
    size, allocated = layer.stat().st_size, layer.stat().st_blocks * 512
    before = host.bytes_uploaded, host.holes_uploaded, host.hole_bytes_uploaded

    spec = VolumeSpec(name="layer.qcow2", capacity=64 * 1024 * 1024, format="qcow2")
    info = host.upload_volume(pool.name, spec, layer, sparse=True)

    sent = host.bytes_uploaded - before[0]
    holes, hole_bytes = host.holes_uploaded - before[1], host.hole_bytes_uploaded - before[2]
    assert 0 < sent <= allocated and sent * 10 < size  # the 4 KiB writes and the metadata
    assert holes > 0 and sent + hole_bytes == size
    uploaded = Path(info.path)
    assert uploaded.stat().st_size == size
    assert filecmp.cmp(layer, uploaded, shallow=False)  # the bytes as they are, holes as zeros
    assert info.sha256 == hashlib.sha256(layer.read_bytes()).hexdigest()  # digested as sent
    _run("qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", str(layer), str(uploaded))
    listed = host.volume(pool.name, "layer.qcow2")
    assert listed is not None and listed.format == "qcow2" == info.format  # libvirt probed it
    assert listed.capacity == 64 * 1024 * 1024  # the virtual size, read from the header


def test_sparse_upload_of_holes_and_zeros_sends_no_data(
    host: Host, pool: PoolSpec, tmp_path: Path
) -> None:
    source = tmp_path / "zeros.raw"
    size = 5 * 1024 * 1024 + 100  # ends in a hole, and in a part of a sector
    with open(source, "wb") as writer:
        writer.write(bytes(1024 * 1024))  # zeros the filesystem holds as data
        writer.truncate(size)
        os.fsync(writer.fileno())
    before = host.bytes_uploaded, host.holes_uploaded, host.hole_bytes_uploaded

    info = host.upload_volume(
        pool.name, VolumeSpec(name="zeros", capacity=size), source, sparse=True
    )

    assert host.bytes_uploaded == before[0]
    assert (host.holes_uploaded, host.hole_bytes_uploaded) == (before[1] + 1, before[2] + size)
    uploaded = Path(info.path)
    assert uploaded.stat().st_size == size and info.format == "raw"
    assert uploaded.stat().st_blocks == 0
    assert _download(host, pool.name, "zeros") == bytes(size)
    assert info.sha256 == hashlib.sha256(bytes(size)).hexdigest()


def test_uploading_over_an_existing_volume_is_refused(
    host: Host, pool: PoolSpec, tmp_path: Path
) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"data")
    host.upload_volume(pool.name, VolumeSpec(name="v", capacity=4), source)
    with pytest.raises(ObjectExists, match="'v' in pool"):
        host.upload_volume(pool.name, VolumeSpec(name="v", capacity=4), source)


def test_delete_is_idempotent_and_pool_with_volumes_is_kept(
    host: Host, pool: PoolSpec, tmp_path: Path
) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"data")
    host.upload_volume(pool.name, VolumeSpec(name="v", capacity=4), source)
    with pytest.raises(OperationFailed, match="still holds volumes"):
        host.delete_pool(pool.name)
    host.delete_volume(pool.name, "v")
    host.delete_volume(pool.name, "v")
    assert host.volume(pool.name, "v") is None


def test_network_lifecycle(host: Host) -> None:
    spec = NetworkSpec(
        name=f"cs-test-{uuid.uuid4().hex[:6]}", cidr="10.214.250.0/28", mode="isolated"
    )
    try:
        info = host.ensure_network(spec)
        assert info.active and info.cidr == spec.cidr and info.mode == "isolated"
        assert host.ensure_network(spec) == info
        with pytest.raises(ObjectExists, match="already exists with subnet"):
            host.ensure_network(NetworkSpec(name=spec.name, cidr="10.214.251.0/28"))
    finally:
        host.delete_network(spec.name)
    assert host.network(spec.name) is None


def test_address_reservations_are_idempotent_and_released(host: Host) -> None:
    spec = NetworkSpec(name=f"cs-test-{uuid.uuid4().hex[:6]}", cidr="10.214.249.0/28")
    first, second = "52:54:00:00:00:01", "52:54:00:00:00:02"
    try:
        host.ensure_network(spec)
        host.reserve_address(spec.name, first, "10.214.249.5", "web-0")
        host.reserve_address(spec.name, first, "10.214.249.5", "web-0")  # again: no change
        assert host.address_reservations(spec.name) == {first: ("10.214.249.5", "web-0")}
        # The address goes to another NIC (a leftover's reservation is replaced, not refused).
        host.reserve_address(spec.name, second, "10.214.249.5", "web-1")
        assert host.address_reservations(spec.name) == {second: ("10.214.249.5", "web-1")}
        host.release_address(spec.name, second)
        host.release_address(spec.name, second)  # gone already: not an error
        assert host.address_reservations(spec.name) == {}
    finally:
        host.delete_network(spec.name)


def test_a_host_that_is_down_gets_one_clear_error(tmp_path: Path) -> None:
    uri = f"qemu:///system?socket={tmp_path}/no-such-socket"
    with pytest.raises(HostUnavailable, match="is libvirtd running"):
        Host(uri)
