"""Shared helpers for the VHD engine tests (a unique module name: no clash with other
test folders' conftest modules).

Fixture images are generated here in ``tmp_path`` (with qemu-img and with our writer),
never committed.  The external oracles (qemu-img, libvhdi's python3-libvhdi) are required:
if one is missing, the test using it FAILS with a message saying what to install.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

MIB = 1024 * 1024
SYSTEM_PYTHON = "/usr/bin/python3"


def qemu_img(*args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which("qemu-img") is None:
        pytest.fail("qemu-img not found: install the Debian package qemu-utils")
    proc = subprocess.run(["qemu-img", *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        pytest.fail(f"qemu-img {' '.join(map(str, args))} failed: {proc.stderr}")
    return proc


def qemu_json(command: str, *args: str | os.PathLike[str]) -> object:
    """``qemu-img COMMAND --output=json ARGS...`` parsed."""
    return json.loads(qemu_img(command, "--output=json", *args).stdout)


def libvhdi_sha256(child: Path, parent: Path) -> str:
    """SHA-256 of what libvhdi reads from ``child`` with ``parent`` set (an independent reader)."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} not found: install python3 and python3-libvhdi")
    script = (
        "import sys, hashlib, pyvhdi\n"
        "p = pyvhdi.file(); p.open(sys.argv[2])\n"
        "c = pyvhdi.file(); c.open(sys.argv[1]); c.set_parent(p)\n"
        "h = hashlib.sha256(); size = c.get_media_size(); off = 0\n"
        "while off < size:\n"
        "    n = min(1 << 22, size - off); h.update(c.read_buffer_at_offset(n, off)); off += n\n"
        "print(h.hexdigest())\n"
    )
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-c", script, str(child), str(parent)], capture_output=True, text=True
    )
    if "No module named 'pyvhdi'" in proc.stderr:
        pytest.fail("pyvhdi missing for /usr/bin/python3: apt-get install python3-libvhdi")
    assert proc.returncode == 0, f"libvhdi could not read {child}: {proc.stderr}"
    return proc.stdout.strip()


def sha256_file(path: Path, size: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        left = size if size is not None else os.path.getsize(path)
        while left:
            chunk = fh.read(min(left, 4 * MIB))
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def make_raw(path: Path, size: int, writes: list[tuple[int, bytes]]) -> Path:
    """A sparse raw image of ``size`` with ``writes`` applied."""
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset, data in writes:
            fh.seek(offset)
            fh.write(data)
    return path


def pattern(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)
