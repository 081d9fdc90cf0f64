"""The VM role end to end: real `pulumi up` through pulumi.automation, real libvirtd, TCG guests.

One story, in the order a team lives it: deploy v1 on 2 instances in 2 update domains, ship v2
as a layer of its changed pages, ship 48 pages changed in 48 blocks (an OS update's shape),
ship a broken v3 that a health gate stops after update domain 0, roll back, refuse a
differencing VHD built against the wrong parent, scale 2 -> 3 -> 2, destroy.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from cloudservice import vhd
from cloudservice.virt import Host
from pulumi import automation as auto
from pulumi.automation import events

from .project import REPO

VMROLE = "cloudservice:index:VmRole"
PAGE, BLOCK, MIB = 4096, 2 * 1024 * 1024, 1024 * 1024
FILL_MIB = 128  # filler files (same in every version) whose pages the scattered release changes


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images")
    build = REPO / "toolchain" / "testimage" / "build.py"
    sizes = ["--size-mib", "160", "--fill-mib", str(FILL_MIB)]
    subprocess.run([sys.executable, str(build), "--out", str(out), *sizes], check=True)
    return out


def _scattered(image: Path, out: Path, count: int = 48) -> Path:
    """`image` with one 4 KiB page changed in each of `count` 2 MiB blocks spread over the
    disk: pages of the filler files, which nothing reads, so the release still boots."""
    filler = set()
    for seed in range(-(-FILL_MIB // 64)):  # the builder's files of at most 64 MiB
        for i in range(min(64, FILL_MIB - 64 * seed)):
            data = hashlib.shake_128(f"cloudservice-testimage:fill{seed}:{i}".encode()).digest(MIB)
            filler |= {data[at : at + PAGE] for at in range(0, MIB, PAGE)}
    candidates = []
    with vhd.open_image(image) as disk:
        for block in range(disk.virtual_size // BLOCK):
            data = disk.read(block * BLOCK, BLOCK)
            at = next((a for a in range(0, BLOCK, PAGE) if data[a : a + PAGE] in filler), None)
            if at is not None:
                candidates.append(block * BLOCK + at)
    assert len(candidates) >= count, f"only {len(candidates)} blocks of filler"
    chosen = [candidates[i * len(candidates) // count] for i in range(count)]
    shutil.copyfile(image, out)
    with vhd.open_image(out, writable=True) as disk:
        for n, offset in enumerate(chosen):
            disk.write(offset, hashlib.shake_128(f"scattered:{n}".encode()).digest(PAGE))
    return out


def _role(stack: auto.Stack) -> dict[str, Any]:
    """The VmRole's recorded state: the truth even after a failed `up` (stack outputs are not)."""
    resources = stack.export_stack().deployment.get("resources", [])
    return next(r["outputs"] for r in resources if r["type"] == VMROLE)


def _pages(role: dict[str, Any]) -> dict[int, list[str]]:
    """What each update domain's instances serve, by their version string."""
    served: dict[int, list[str]] = {}
    for instance in role["instances"]:
        page = requests.get(instance["urls"][0] + "index.html", timeout=10).text
        version = page.split("<h1>cloudservice web ", 1)[1].split("<", 1)[0]
        served.setdefault(instance["updateDomain"], []).append(version)
    return served


def _reads_as(layer: dict[str, Any], image: Path) -> bool:
    """The layer on the host, through its backing chain, is the image (`qemu-img compare`)."""
    compare = ["qemu-img", "compare", "-f", layer["format"], "-F", "vpc", layer["path"], str(image)]
    return subprocess.run(compare, capture_output=True, check=False).returncode == 0


def _use(stack: auto.Stack, image: Path) -> None:
    stack.set_config("webImage", auto.ConfigValue(str(image)))


def test_vm_role_lifecycle(
    stack: auto.Stack,
    images: Path,
    host: Host,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"  # the provider's local cache (it inherits this environment)
    monkeypatch.setenv("CLOUDSERVICE_CACHE", str(cache))
    stack.set_config("healthTimeoutSeconds", auto.ConfigValue("45"))
    stack.set_config("webInstances", auto.ConfigValue("2"))
    _use(stack, images / "web-v1.vhd")

    up = stack.up()
    role = _role(stack)
    pool = up.outputs["pool"].value
    assert [(i["name"].rsplit("-", 1)[1], i["updateDomain"]) for i in role["instances"]] == [
        ("0", 0),
        ("1", 1),
    ]
    assert _pages(role) == {0: ["v1"], 1: ["v1"]}
    assert stack.up().summary.resource_changes.get("update", 0) == 0

    # v2: only a differencing layer goes up, and update domain 0 moves before 1.
    _use(stack, images / "web-v2.vhd")
    preview = stack.preview(diff=True)
    assert "~ imageSha256" in preview.stdout
    # ... and says, in service terms, what the update will do (an info message, on stderr).
    shown = preview.stdout + preview.stderr
    assert re.search(r"will: image: \d+ pages changed in 1 of \d+ blocks", shown)
    assert "bytes to upload; update domains 0, 1 (auto)" in shown
    stack.up()
    role = _role(stack)
    layer = role["layers"][-1]
    assert layer["format"] == "qcow2" and layer["backing"] == role["layers"][0]["volume"]
    assert 0 < role["lastUploadBytes"] <= 64 * 1024  # two pages, the layer's tables, its record
    assert role["updateDomainsUpgraded"] == [0, 1]
    assert _pages(role) == {0: ["v2"], 1: ["v2"]}

    # 48 pages in 48 blocks: what travels is the pages (+ 64 KiB), not the blocks holding them.
    scattered = _scattered(images / "web-v2.vhd", tmp_path / "web-v2-scattered.vhd")
    _use(stack, scattered)
    shown = "".join(stack.preview(diff=True).__dict__[k] for k in ("stdout", "stderr"))
    said = re.search(
        r"image: 48 pages changed in 48 of \d+ blocks \(196608 bytes\), (\d+) b", shown
    )
    assert said, shown
    bound = 1.25 * 48 * PAGE + 64 * 1024
    assert int(said.group(1)) <= bound
    seen: list[events.DiagnosticEvent] = []
    stack.up(on_event=lambda e: seen.append(e.diagnostic_event) if e.diagnostic_event else None)
    # Progress a person watches: the status line beside the resource, then a summary.
    statuses = [d.message for d in seen if d.ephemeral and d.urn and VMROLE in d.urn]
    uploading = r"uploading \S+-l\d+\.qcow2: \d+ of \d+ bytes \(\d+ sent, holes skipped\)"
    assert any(re.search(uploading, m) for m in statuses), statuses
    assert any("update domain 0 (1 of 2): restarting" in m for m in statuses), statuses
    assert any("update domain 1 (2 of 2): waiting for health" in m for m in statuses)
    assert any(
        "bytes uploaded; update domains 0, 1 upgraded" in d.message and not d.ephemeral
        for d in seen
    )
    role = _role(stack)
    assert role["lastUploadBytes"] <= bound  # counted at the libvirt stream, record included
    assert _pages(role) == {0: ["v2"], 1: ["v2"]}
    top = role["layers"][-1]
    assert _reads_as(top, scattered)

    # A stale local cache: the top layer's entry is another upload's record, whose manifest
    # already has v3's pages. Trusted, v3's layer would be empty and v3 would serve v2.
    cached = cache / "manifests" / f"{top['imageSha256']}.json"
    stale = json.loads(cached.read_text())
    stale["layer"]["uploadedSha256"] = "0" * 64
    with vhd.open_image(images / "web-v3.vhd") as v3:
        stale["manifest"] = vhd.make_manifest(v3).to_json()
    cached.write_text(json.dumps(stale))

    # v3 fails its health probe: the rollout stops after update domain 0.
    _use(stack, images / "web-v3.vhd")
    with pytest.raises(auto.CommandError) as failure:
        stack.up()
    message = str(failure.value)
    assert "rollout stopped: instance" in message and "update domain 0" in message
    assert "/health" in message and "HTTP 404" in message
    role = _role(stack)
    assert role["rolloutComplete"] is False and role["updateDomainsUpgraded"] == [0]
    assert _pages(role) == {0: ["v3"], 1: ["v2"]}  # booted from the layer: v3's pages
    v3_layer = role["layers"][-1]["path"]
    compare = [
        "qemu-img",
        "compare",
        "-f",
        "qcow2",
        "-F",
        "vpc",
        v3_layer,
        str(images / "web-v3.vhd"),
    ]
    assert subprocess.run(compare, capture_output=True, check=False).returncode == 0

    # Rolling back is `up` with the previous image: its layer is still there, nothing uploads.
    _use(stack, images / "web-v2.vhd")
    stack.up()
    role = _role(stack)
    assert role["rolloutComplete"] is True and role["lastUploadBytes"] == 0
    assert _pages(role) == {0: ["v2"], 1: ["v2"]}
    deployed_chain = [layer["volume"] for layer in role["layers"]]

    # A differencing VHD made against another parent (v1, not the deployed v2) is refused.
    wrong_child = tmp_path / "wrong-parent.vhd"
    with (
        vhd.open_image(images / "web-v1.vhd") as parent,
        vhd.open_image(images / "web-v3.vhd") as new,
    ):
        vhd.diff_images(parent, new, wrong_child)
    _use(stack, wrong_child)
    with pytest.raises(auto.CommandError) as refused:
        stack.up()
    assert "build the update against the deployed image" in str(refused.value)
    assert "Traceback" not in str(refused.value)
    role = _role(stack)
    assert [layer["volume"] for layer in role["layers"]] == deployed_chain
    assert _pages(role) == {0: ["v2"], 1: ["v2"]}
    _use(stack, images / "web-v2.vhd")

    # A bigger VM size in the service definition: a rolling upgrade, update domain by domain.
    service = stack.workspace.work_dir + "/sample/vm-role.yaml"
    Path(service).write_text(Path(service).read_text().replace("ExtraSmall", "Small"))
    stack.up()
    role = _role(stack)
    assert role["updateDomainsUpgraded"] == [0, 1] and role["rolloutComplete"] is True
    domains = [host.domain(i["name"]) for i in role["instances"]]
    assert [d.memory_mib if d else None for d in domains] == [1792, 1792]  # Azure's Small
    assert _pages(role) == {0: ["v2"], 1: ["v2"]}

    # Scale out, then in: the third instance lands in update domain 0 and goes again.
    stack.set_config("webInstances", auto.ConfigValue("3"))
    stack.up()
    role = _role(stack)
    assert [i["updateDomain"] for i in role["instances"]] == [0, 1, 0]
    assert _pages(role) == {0: ["v2", "v2"], 1: ["v2"]}
    third = role["instances"][2]["name"]
    stack.set_config("webInstances", auto.ConfigValue("2"))
    stack.up()
    assert host.domain(third) is None and host.volume(pool, f"{third}.qcow2") is None
    assert len(_role(stack)["instances"]) == 2

    # An instance deleted behind Pulumi's back: refresh notices, the next `up` brings it back.
    lost = _role(stack)["instances"][1]["name"]
    host.delete_domain(lost)
    assert stack.refresh().summary.resource_changes.get("update") == 1
    assert lost not in [i["name"] for i in _role(stack)["instances"]]
    stack.up()
    assert _pages(_role(stack)) == {0: ["v2"], 1: ["v2"]}

    names = [i["name"] for i in _role(stack)["instances"]]
    stack.destroy()
    assert all(host.domain(name) is None for name in names)
    assert host.pool(pool) is None
    assert not Path(stack.get_config("poolPath").value).exists()
