"""Edge cases: disk sizes that are not block or page multiples; crash-safe write order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cloudservice.vhd import (
    coalesce,
    create_dynamic,
    diff_images,
    open_image,
    write_qcow2_overlay,
    write_raw,
)
from vhd_helpers import MIB, libvhdi_sha256, make_raw, pattern, qemu_img, sha256_file

ODD = 5 * MIB + 3584  # not a multiple of the 2 MiB block, nor of a 4 KiB page


def test_odd_size_diff_overlay_and_libvhdi(tmp_path: Path) -> None:
    base = make_raw(tmp_path / "base.raw", ODD, [(0, pattern(ODD, 1))])
    new = make_raw(
        tmp_path / "new.raw", ODD, [(0, pattern(ODD, 1)), (ODD - 1000, pattern(1000, 2))]
    )
    with open_image(base) as src:
        coalesce(src, tmp_path / "p.vhd")
    with open_image(tmp_path / "p.vhd") as p, open_image(new) as n:
        result = diff_images(p, n, tmp_path / "c.vhd")
    assert result.blocks_changed == 1 and result.bytes_changed == 3584  # the last, short page
    with open_image(tmp_path / "c.vhd") as c:
        write_raw(c, tmp_path / "out.raw")
        write_qcow2_overlay(c, tmp_path / "o.qcow2")
    assert sha256_file(tmp_path / "out.raw") == sha256_file(new)
    assert libvhdi_sha256(tmp_path / "c.vhd", tmp_path / "p.vhd") == sha256_file(new)
    qemu_img("check", tmp_path / "o.qcow2")
    qemu_img("compare", "-F", "raw", tmp_path / "o.qcow2", new)


def test_allocation_order_is_block_footer_fsync_bat_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_dynamic(tmp_path / "d.vhd", 8 * MIB)
    size = (tmp_path / "d.vhd").stat().st_size
    events: list[tuple[str, int]] = []
    real_pwrite, real_fsync = os.pwrite, os.fsync

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        events.append(("write", offset))
        return real_pwrite(fd, data, offset)

    def fsync(fd: int) -> None:
        events.append(("fsync", -1))
        real_fsync(fd)

    with open_image(tmp_path / "d.vhd", writable=True) as img:
        monkeypatch.setattr(os, "pwrite", pwrite)
        monkeypatch.setattr(os, "fsync", fsync)
        img.write(2 * MIB, b"q" * 4096)  # allocates block 1
        monkeypatch.undo()
    old_footer = size - 512
    assert events == [
        ("write", old_footer),  # bitmap + data where the footer was
        ("write", old_footer + 512 + 2 * MIB),  # footer at the new end
        ("fsync", -1),
        ("write", 1536 + 4 * 1),  # then the BAT entry
        ("fsync", -1),
    ]
    qemu_img(
        "compare",
        "-f",
        "vpc",
        "-F",
        "raw",
        tmp_path / "d.vhd",
        make_raw(tmp_path / "w.raw", 8 * MIB, [(2 * MIB, b"q" * 4096)]),
    )
