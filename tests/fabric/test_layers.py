"""An image chain after an interrupted run, on the real libvirtd (no guest boots).

What an interrupted `up` leaves (a layer uploaded but never recorded in state, a partial
upload, a volume swapped behind our back, a damaged local cache) is adopted only when its
bytes check out, and otherwise replaced; the layer a release ends with is always the new
image (`qemu-img compare`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudservice import vhd
from cloudservice.fabric import scan_release, vm_role
from cloudservice.fabric._layers import ImageChain, Layer
from cloudservice.fabric.vm_role import VmRole, VmRoleDeployment, VmRoleSpec
from cloudservice.model import ChangeKind
from cloudservice.virt import Host, HypervisorError, PoolSpec, VolumeSpec

REPO = Path(__file__).resolve().parents[2]
V1, V2 = REPO / ".cache/images/web-v1.vhd", REPO / ".cache/images/web-v2.vhd"
V3 = REPO / ".cache/images/web-v3.vhd"


@pytest.fixture
def chain(host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ImageChain]:
    if not V2.exists():
        pytest.fail(f"{V2} is missing: run `make setup`", pytrace=False)
    monkeypatch.setenv("CLOUDSERVICE_CACHE", str(tmp_path / "cache"))
    name = f"cs-test-{uuid.uuid4().hex[:6]}"
    host.ensure_pool(PoolSpec(name=name, path=f"/var/lib/cloudservice/pools/{name}"))
    yield ImageChain(host, name, "role")
    for volume in host.volume_names(name):
        host.delete_volume(name, volume)
    host.delete_pool(name)


def _released(chain: ImageChain, image: Path, layers: list[Layer]) -> tuple[Layer, list[Layer]]:
    return chain.release(scan_release(str(image)), str(image), layers, max_depth=4)


def _same_disk(layer: Layer, image: Path) -> bool:
    compare = ["qemu-img", "compare", "-f", layer.format, "-F", "vpc", layer.path, str(image)]
    return subprocess.run(compare, capture_output=True, check=False).returncode == 0


def test_a_complete_layer_the_state_never_recorded_is_adopted(chain: ImageChain) -> None:
    base, layers = _released(chain, V1, [])
    lost, _ = _released(chain, V2, layers)  # uploaded, then the run was killed
    adopted = chain.reconcile(layers, repair=True)
    assert [layer.volume for layer in adopted] == [base.volume, lost.volume]
    streamed = chain.host.bytes_uploaded
    again, _ = _released(chain, V2, adopted)
    assert again == lost and chain.host.bytes_uploaded == streamed  # nothing uploaded twice
    assert _same_disk(again, V2)


def test_a_partial_or_swapped_layer_is_replaced(chain: ImageChain) -> None:
    base, layers = _released(chain, V1, [])
    # A partial upload (no record), and a recorded layer whose bytes were swapped.
    chain.host.upload_bytes(chain.pool, "role-l2.qcow2", b"half a layer")
    lost, _ = _released(chain, V2, layers)
    chain.host.overwrite_volume(
        chain.pool,
        VolumeSpec(name=lost.volume, capacity=lost.uploaded_bytes, format="qcow2"),
        V1,
    )
    assert chain.on_host()[1] == ["role-l2.qcow2"]
    repaired = chain.reconcile(layers, repair=True)
    assert [layer.volume for layer in repaired] == [base.volume]
    assert set(chain.host.volume_names(chain.pool)) == {base.volume, f"{base.volume}.manifest.json"}
    layer, _ = _released(chain, V2, repaired)
    assert _same_disk(layer, V2)


def test_a_damaged_or_foreign_cache_entry_is_not_trusted(chain: ImageChain, tmp_path: Path) -> None:
    base, layers = _released(chain, V1, [])
    cached = tmp_path / "cache" / "manifests" / f"{base.image_sha256}.json"
    record = json.loads(cached.read_text())
    # A stale entry: another upload's record, with the blocks of the new image (nothing would
    # look changed, and the layer would silently read the old data).
    record["layer"]["uploadedSha256"] = "0" * 64
    with vhd.open_image(V2) as new:
        record["manifest"] = vhd.make_manifest(new).to_json()
    cached.write_text(json.dumps(record))
    layer, _ = _released(chain, V2, layers)
    assert _same_disk(layer, V2)
    cached.write_bytes(b"\0garbage")
    chain.delete(layer.volume)
    layer, _ = _released(chain, V2, layers)
    assert _same_disk(layer, V2)


def test_a_layer_replaced_on_the_host_is_not_diffed_against(chain: ImageChain) -> None:
    _, layers = _released(chain, V1, [])
    top, layers = _released(chain, V2, layers)
    # Same name, other bytes: a layer of V3 over it would read V3's pages over V1's.
    chain.host.overwrite_volume(
        chain.pool, VolumeSpec(name=top.volume, capacity=0, format="qcow2"), V1
    )
    layer, _ = _released(chain, V3, layers)
    assert layer.format == "vpc" and layer.backing is None  # uploaded whole: a new chain
    assert _same_disk(layer, V3)


def test_without_a_cache_the_manifest_is_rebuilt_from_the_records_of_the_chain(
    chain: ImageChain, tmp_path: Path
) -> None:
    _, layers = _released(chain, V1, [])
    _, layers = _released(chain, V2, layers)
    record = json.loads(chain.host.download_bytes(chain.pool, f"{layers[-1].volume}.manifest.json"))
    assert "changes" in record and "manifest" not in record  # its size follows the change
    assert len(json.dumps(record)) < 4096
    shutil.rmtree(tmp_path / "cache")  # another machine, or a wiped cache
    streamed = chain.host.bytes_uploaded
    layer, _ = _released(chain, V3, layers)
    assert layer.format == "qcow2" and layer.backing == layers[-1].volume
    assert chain.host.bytes_uploaded - streamed < 64 * 1024  # a layer of V3's few pages
    assert _same_disk(layer, V3)


def test_a_failure_after_the_upload_is_resumed_without_uploading_again(
    chain: ImageChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = _released(chain, V1, [])
    spec = VmRoleSpec(name=chain.role, pool=chain.pool, instance_count=1, image=str(V2))
    before = VmRoleDeployment(
        layers=[base],
        instances=[],
        rollout_complete=True,
        update_domains_upgraded=[],
        last_upload_bytes=0,
        summary="",
    )
    starts: list[str] = []

    def cannot_start(*_args: object, **_kwargs: object) -> None:
        starts.append("refused")
        raise HypervisorError("domain role-0: cannot start (the host refused)")

    monkeypatch.setattr(vm_role, "start_instance", cannot_start)
    with pytest.raises(HypervisorError):
        VmRole(chain.host, spec).change(before, ChangeKind.ROLLING_UPGRADE)
    uploaded = chain.host.bytes_uploaded
    # The next `up` starts from the state as it was recorded: the layer is found, not re-sent.
    with pytest.raises(HypervisorError):
        VmRole(chain.host, spec).change(before, ChangeKind.ROLLING_UPGRADE)
    assert starts == ["refused", "refused"]
    assert chain.host.bytes_uploaded == uploaded
    layers, partial = chain.on_host()
    assert [layer.volume for layer in layers] == [base.volume, "role-l1.qcow2"] and not partial
    assert _same_disk(layers[-1], V2)
