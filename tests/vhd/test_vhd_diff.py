"""Diffs: P + C == N, only changed blocks allocated, 4 KiB bitmap runs, checked by libvhdi."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from cloudservice.vhd import (
    DifferencingImage,
    ExtentKind,
    ImageFormatError,
    VhdWriter,
    coalesce,
    diff_images,
    open_image,
    write_raw,
)
from cloudservice.vhd._diff import changed_pages
from cloudservice.vhd._format import SECTOR
from vhd_helpers import MIB, libvhdi_sha256, pattern, qemu_img, sha256_file


@pytest.fixture
def parent_vhd(tmp_path: Path, base_raw: Path) -> Path:
    with open_image(base_raw, format="raw") as src:
        coalesce(src, tmp_path / "parent.vhd")
    return tmp_path / "parent.vhd"


def _new_as(fmt: str, new_raw: Path, tmp_path: Path) -> Path:
    if fmt == "raw":
        return new_raw
    out = tmp_path / f"new.{fmt}"
    if fmt == "vhd-dynamic":
        qemu_img("convert", "-f", "raw", "-O", "vpc", "-o", "force_size=on", new_raw, out)
    elif fmt == "vhd-fixed":
        qemu_img(
            "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", new_raw, out
        )
    else:
        qemu_img("convert", "-f", "raw", "-O", "qcow2", new_raw, out)
    return out


@pytest.mark.parametrize("fmt", ["raw", "vhd-dynamic", "vhd-fixed", "qcow2"])
def test_parent_plus_child_is_new(
    tmp_path: Path, parent_vhd: Path, new_raw: Path, fmt: str
) -> None:
    new = _new_as(fmt, new_raw, tmp_path)
    child = tmp_path / "child.vhd"
    with open_image(parent_vhd) as parent, open_image(new) as n:
        result = diff_images(parent, n, child)
    # changed: block 0 (one page), block 5 (zeroed 128 KiB), block 20 (new data)
    assert (result.blocks_changed, result.blocks_total) == (3, 32)
    assert result.bytes_changed == 4096 + 131072 + 20480
    with open_image(child) as c:
        assert isinstance(c, DifferencingImage)
        assert c.allocated_blocks() == [0, 5, 20]
        write_raw(c, tmp_path / "out.raw")
    assert sha256_file(tmp_path / "out.raw") == sha256_file(new_raw)
    assert libvhdi_sha256(child, parent_vhd) == sha256_file(new_raw)


def test_child_bitmaps_mark_only_changed_4k_pages(
    tmp_path: Path, parent_vhd: Path, new_raw: Path
) -> None:
    child = tmp_path / "child.vhd"
    with open_image(parent_vhd) as parent, open_image(new_raw) as n:
        diff_images(parent, n, child)
    with open_image(child) as c:
        assert isinstance(c, DifferencingImage)
        bitmap = c.sector_bitmap(0)
        assert bitmap is not None
        assert set(bitmap[:512]) == {0, 0xFF}  # whole bytes only: 4 KiB-aligned runs
        assert [i for i, b in enumerate(bitmap) if b] == [2]
        # unchanged sector of an allocated block falls through to the parent
        assert c.block_status(0).kind is ExtentKind.BACKING
        ext = c.block_status(8192)
        assert (ext.kind, ext.length) == (ExtentKind.DATA, 4096)
        assert c.block_status(3 * MIB).kind is ExtentKind.BACKING  # unallocated: never ZERO


def test_identical_images_give_empty_child(
    tmp_path: Path, parent_vhd: Path, base_raw: Path
) -> None:
    with open_image(parent_vhd) as parent, open_image(base_raw) as n:
        result = diff_images(parent, n, tmp_path / "c.vhd")
    assert result.blocks_changed == 0
    assert result.file_size == 512 + 1024 + 512 + 1024 + 512  # footers, header, BAT, locators


def test_blocks_unallocated_in_both_are_never_read(tmp_path: Path) -> None:
    size = 1024 * MIB
    for name in ("p.vhd", "n.vhd"):
        with VhdWriter(tmp_path / name, size) as w:
            w.write_block(100, pattern(4096, 1) if name == "p.vhd" else pattern(4096, 2))
    with open_image(tmp_path / "p.vhd") as p, open_image(tmp_path / "n.vhd") as n:
        result = diff_images(p, n, tmp_path / "c.vhd")
    assert result.bytes_read == 2 * 2 * MIB  # block 100 of each side, nothing else
    assert result.blocks_changed == 1


def test_memory_is_bounded_by_blocks_not_disk_size(tmp_path: Path) -> None:
    size = 2040 * 1024 * MIB  # the VHD maximum
    for name, seed in (("p.vhd", 1), ("n.vhd", 2)):
        with VhdWriter(tmp_path / name, size) as w:
            for index in (0, 500_000, 1_044_479):
                w.write_block(index, pattern(8192, seed + index))
    tracemalloc.start()
    try:
        with open_image(tmp_path / "p.vhd") as p, open_image(tmp_path / "n.vhd") as n:
            result = diff_images(p, n, tmp_path / "c.vhd")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.blocks_changed == 3
    assert peak < 64 * MIB, f"peak Python memory {peak} bytes"


def test_diff_refuses_size_mismatch(tmp_path: Path, parent_vhd: Path) -> None:
    small = tmp_path / "small.raw"
    small.write_bytes(bytes(MIB))
    with (
        open_image(parent_vhd) as p,
        open_image(small) as n,
        pytest.raises(ImageFormatError, match=r"virtual size 1048576 differs"),
    ):
        diff_images(p, n, tmp_path / "c.vhd")
    assert not (tmp_path / "c.vhd").exists()


def test_changed_pages_finds_each_page() -> None:
    a = bytearray(2 * MIB)
    b = bytearray(a)
    for page in (0, 17, 511):
        b[page * 4096 + 4095] = 1
    assert changed_pages(a, b, len(a)) == [0, 17, 511]
    assert changed_pages(a, a, len(a)) == []


def test_diff_chain_of_children_reads_through(
    tmp_path: Path, parent_vhd: Path, new_raw: Path
) -> None:
    c1 = tmp_path / "c1.vhd"
    with open_image(parent_vhd) as p, open_image(new_raw) as n:
        diff_images(p, n, c1)
    newer = tmp_path / "newer.raw"
    data = bytearray(new_raw.read_bytes())
    data[30 * MIB : 30 * MIB + 4096] = pattern(4096, 9)
    newer.write_bytes(bytes(data))
    c2 = tmp_path / "c2.vhd"
    with open_image(c1) as p, open_image(newer) as n:
        result = diff_images(p, n, c2)
        assert result.blocks_changed == 1
    with open_image(c2) as c:
        assert [img.info().type for img in (c, c.parent, c.parent.parent)] == [
            "differencing",
            "differencing",
            "dynamic",
        ]
        assert c.read(30 * MIB, 4096) == bytes(data[30 * MIB : 30 * MIB + 4096])
        assert c.read(8192, SECTOR) == bytes(data[8192 : 8192 + SECTOR])
