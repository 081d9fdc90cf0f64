"""Release scans: one read per version of an image file, in a process and across processes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cloudservice import vhd
from cloudservice.fabric import _scans, scan_release
from cloudservice.files import sha256_of_file

REPO = Path(__file__).resolve().parents[2]
V1 = REPO / ".cache/images/web-v1.vhd"


@pytest.fixture
def image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if not V1.exists():
        pytest.fail(f"{V1} is missing: run `make setup`", pytrace=False)
    monkeypatch.setenv("CLOUDSERVICE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_scans, "_seen", {})  # a fresh process
    copy = tmp_path / "release.vhd"
    shutil.copyfile(V1, copy)
    return copy


def _count_scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    scans: list[str] = []
    real = vhd.scan_image

    def counted(image: vhd.Image) -> tuple[vhd.BlockManifest, str]:
        scans.append(image.path)
        return real(image)

    monkeypatch.setattr(vhd, "scan_image", counted)
    return scans


def test_an_image_is_read_once_per_version(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scans = _count_scans(monkeypatch)
    first = scan_release(str(image))
    assert first.sha256 == sha256_of_file(image)
    with vhd.open_image(image) as opened:
        assert first.manifest == vhd.make_manifest(opened)
    monkeypatch.setattr(_scans, "_seen", {})  # another process: the cache answers
    assert scan_release(str(image)) == first
    assert len(scans) == 1
    with open(image, "r+b") as fh:  # a new version of the file: read again
        fh.seek(1024 * 1024 + 8192)
        fh.write(b"\x01" * 4096)
    again = scan_release(str(image))
    assert len(scans) == 2 and again.sha256 == sha256_of_file(image) != first.sha256


def test_a_damaged_or_foreign_cache_entry_means_a_new_scan(
    image: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scans = _count_scans(monkeypatch)
    first = scan_release(str(image))
    (entry,) = (tmp_path / "cache" / "scans").iterdir()
    entry.write_bytes(b"{not json")
    monkeypatch.setattr(_scans, "_seen", {})
    assert scan_release(str(image)) == first and len(scans) == 2
    # An entry of another file of the same name: its identity (inode, times) differs.
    other = tmp_path / "other.vhd"
    shutil.copyfile(image, other)
    os.replace(other, image)
    monkeypatch.setattr(_scans, "_seen", {})
    assert scan_release(str(image)) == first and len(scans) == 3


def test_a_differencing_release_is_its_parents_scan_plus_its_own_pages(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v2 = REPO / ".cache/images/web-v2.vhd"
    child = tmp_path / "update.vhd"
    with vhd.open_image(image) as parent, vhd.open_image(v2) as new:
        vhd.diff_images(parent, new, child)
    scan_release(str(image))  # the parent was scanned when it was deployed
    scans = _count_scans(monkeypatch)
    scanned = scan_release(str(child))
    assert scans == []  # no whole-image scan: the parent's is cached, the child is small
    assert scanned.sha256 == sha256_of_file(child)
    with vhd.open_image(v2) as new:
        assert scanned.manifest.pages == vhd.make_manifest(new).pages
