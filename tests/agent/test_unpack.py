"""Unpacking the package disk: every member is checked; only what is safe is written."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from cloudservice.agent import DigestMismatch, PackageRejected, unpack_package
from cloudservice.model import build_package


def evil_package(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> bytes:
    """A package whose second member is ``name`` of type ``kind``, as no builder makes it."""
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        manifest = json.dumps({"format": 1, "entryPoint": "true"}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        body = b"evil" if kind == tarfile.REGTYPE else b""
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return raw.getvalue()


def _device(tmp_path: Path, data: bytes) -> tuple[Path, int, str]:
    device = tmp_path / "vdb"
    device.write_bytes(data + b"\0" * (-len(data) % 512))
    return device, len(data), hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("name", "kind", "link", "reason"),
    [
        ("content/../../escape", tarfile.REGTYPE, "", "'..'"),
        ("/etc/evil", tarfile.REGTYPE, "", "outside"),
        ("content//etc/evil", tarfile.REGTYPE, "", "absolute"),
        ("content/a/./b", tarfile.REGTYPE, "", "'.'"),
        ("other/file", tarfile.REGTYPE, "", "outside"),
        ("content/link", tarfile.SYMTYPE, "../../etc/passwd", "link leaving"),
        ("content/link", tarfile.SYMTYPE, "/etc/passwd", "link leaving"),
        ("content/hard", tarfile.LNKTYPE, "content/app.py", "hard link"),
        ("content/fifo", tarfile.FIFOTYPE, "", "special file"),
        ("content/dev", tarfile.CHRTYPE, "", "special file"),
        ("content/bad\x01name", tarfile.REGTYPE, "", "control character"),
    ],
)
def test_unsafe_members_are_refused(
    tmp_path: Path, name: str, kind: bytes, link: str, reason: str
) -> None:
    device, size, sha = _device(tmp_path, evil_package(name, kind, link))
    destination = tmp_path / "srv" / "role" / sha
    with pytest.raises(PackageRejected, match=reason):
        unpack_package(device, size, sha, destination)
    assert not destination.exists()
    assert not (tmp_path / "srv" / "role" / f"{sha}.partial").exists()
    assert not (tmp_path / "escape").exists()


def test_nothing_is_written_below_a_symlink(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w") as tar,
    ):
        link = tarfile.TarInfo("content/a")
        link.type, link.linkname = tarfile.SYMTYPE, "."
        tar.addfile(link)
        inner = tarfile.TarInfo("content/a/b")
        inner.type, inner.linkname = tarfile.SYMTYPE, ".."
        tar.addfile(inner)
    device, size, sha = _device(tmp_path, raw.getvalue())
    with pytest.raises(PackageRejected, match="below a symlink"):
        unpack_package(device, size, sha, tmp_path / "out")


def test_a_package_from_build_package_unpacks_with_modes_and_links(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "bin").mkdir(parents=True)
    (source / "bin" / "run.sh").write_text("#!/bin/sh\n")
    (source / "bin" / "run.sh").chmod(0o755)
    (source / "readme").write_text("hi")
    os.symlink("bin/run.sh", source / "run")
    built = build_package(source, tmp_path / "role.cspkg", entry_point="./run")
    device, size, sha = _device(tmp_path, built.path.read_bytes())
    destination = tmp_path / "srv" / "role" / sha
    manifest = unpack_package(device, size, sha, destination)
    assert manifest["entryPoint"] == "./run"
    assert (destination / "readme").read_text() == "hi"
    assert os.readlink(destination / "run") == "bin/run.sh"
    assert os.stat(destination / "bin" / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(destination / "readme").st_mode & 0o777 == 0o644


def test_a_digest_mismatch_is_reported_before_anything_is_unpacked(tmp_path: Path) -> None:
    device, size, sha = _device(tmp_path, evil_package("content/../x"))
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        unpack_package(device, size, "f" * 64, tmp_path / "out")
    with pytest.raises(DigestMismatch, match="holds"):
        unpack_package(device, size + 4096, sha, tmp_path / "out")
    assert not (tmp_path / "out").exists()
