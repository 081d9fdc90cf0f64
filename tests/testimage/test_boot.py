"""The test images really boot: build them, boot each under plain QEMU (TCG), talk HTTP to it.

Builds into tmp_path (the kernel/initramfs cache in ~/.cache makes reruns fast). The guest is
reached only through QEMU user-mode networking forwarded to 127.0.0.1. Nothing here skips:
a missing tool fails with a message saying which.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "toolchain" / "testimage" / "build.py"
READY_TIMEOUT = 120.0  # TCG boots take about 5-20 s; generous for a loaded machine
MIB = 1 << 20
# Never through a proxy: the only traffic is to the forwarded port on 127.0.0.1.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian: qemu-system-x86 / diffutils)", pytrace=False)
    return path


def build_images(out: Path, *args: str) -> tuple[dict[str, Any], float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(out), "--keep-raw", *args],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"build.py failed ({proc.returncode}):\n{proc.stderr}", pytrace=False)
    return json.loads((out / "manifest.json").read_text()), time.monotonic() - start


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images")
    build_images(out)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Guest:
    port: int
    ready_seconds: float
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with HTTP.open(url, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")


def wait_ready(proc: subprocess.Popen[bytes], log: Path, line: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if line in text:
            return
        if "CLOUDSERVICE-FAILED" in text:
            pytest.fail(f"the guest init failed; serial:\n{text[-3000:]}", pytrace=False)
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"qemu exited ({proc.returncode}): {err}\nserial:\n{text}", pytrace=False)
        time.sleep(0.1)
    pytest.fail(f"no {line!r} within {READY_TIMEOUT:.0f} s; serial:\n{text[-3000:]}", pytrace=False)


@contextmanager
def boot(vhd: Path, version: str) -> Iterator[Guest]:
    """Plain qemu, TCG, no graphics: disk and NIC on virtio, serial console to a file."""
    qemu = require_tool("qemu-system-x86_64")
    port, log = free_port(), vhd.with_name(f"{vhd.stem}.serial.log")
    cmd = [
        qemu, "-accel", "tcg", "-m", "256", "-nodefaults", "-display", "none",
        "-serial", f"file:{log}", "-drive", f"file={vhd},format=vpc,if=virtio",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:80",
        "-device", "virtio-net-pci,netdev=n0",
    ]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(proc, log, f"CLOUDSERVICE-READY {version}")
        yield Guest(port, time.monotonic() - start, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def differing_units(a: Path, b: Path) -> list[int]:
    """4 KiB units that differ, from `cmp -l` (an independent check of build.py's own diff)."""
    cmp = subprocess.run(
        [require_tool("cmp"), "-l", str(a), str(b)], capture_output=True, text=True, check=False
    )
    if cmp.returncode > 1:
        pytest.fail(f"cmp failed: {cmp.stderr}", pytrace=False)
    return sorted({(int(line.split()[0]) - 1) // 4096 for line in cmp.stdout.splitlines()})


def runs(units: list[int]) -> int:
    return sum(1 for i, u in enumerate(units) if i == 0 or units[i - 1] != u - 1)


@pytest.mark.parametrize(
    ("version", "health"), [("v1", (200, "ok")), ("v2", (200, "ok")), ("v3", (404, None))]
)
def test_image_boots_and_serves(
    images: Path, version: str, health: tuple[int, str | None], capsys: pytest.CaptureFixture[str]
) -> None:
    with boot(images / f"web-{version}.vhd", version) as guest:
        status, body = guest.get("/index.html")
        assert status == 200
        assert f"<h1>cloudservice web {version}</h1>" in body
        status, body = guest.get("/health")
        assert status == health[0]
        if health[1] is not None:
            assert body.strip() == health[1]
    with capsys.disabled():
        print(f"\nweb-{version}: boot to CLOUDSERVICE-READY in {guest.ready_seconds:.1f} s (TCG)")


def test_v2_differs_from_v1_in_a_few_blocks(images: Path) -> None:
    units = differing_units(images / "web-v1.raw", images / "web-v2.raw")
    assert 0 < len(units) <= 4, units
    assert runs(units) <= 2, units
    manifest = json.loads((images / "manifest.json").read_text())
    v2 = next(img for img in manifest["images"] if img["version"] == "v2")
    assert v2["diff_vs_v1"]["units_4k"] == len(units)


def test_rebuild_is_a_no_op_and_force_is_reproducible(images: Path) -> None:
    before = json.loads((images / "manifest.json").read_text())
    again, seconds = build_images(images)
    assert again == before
    assert seconds < 10, f"an up-to-date rebuild took {seconds:.1f} s"
    forced, _ = build_images(images, "--force")
    assert [i["sha256"] for i in forced["images"]] == [i["sha256"] for i in before["images"]]


def test_fill_and_change_knobs(tmp_path: Path) -> None:
    """The benchmark knobs: shared filler, plus a rewritten filler file in each new version."""
    manifest, _ = build_images(
        tmp_path, "--size-mib", "96", "--fill-mib", "40", "--change-mib", "4",
        "--version", "v1", "v2",
    )  # fmt: skip
    v2 = manifest["images"][1]["diff_vs_v1"]
    change_units = 4 * MIB // 4096
    assert change_units <= v2["units_4k"] <= change_units + 4
    assert v2["runs_4k"] <= 3
    units = differing_units(tmp_path / "web-v1.raw", tmp_path / "web-v2.raw")
    assert len(units) == v2["units_4k"]
