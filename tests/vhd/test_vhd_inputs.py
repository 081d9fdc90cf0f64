"""Raw and qcow2 diff inputs behind the Image interface; fixed VHD writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from cloudservice.vhd import (
    ExtentKind,
    ImageUsageError,
    create_fixed,
    detect_format,
    image_map,
    open_image,
    write_raw,
)
from vhd_helpers import MIB, make_raw, pattern, qemu_img, sha256_file


def test_sparse_raw_reports_holes_as_zero(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "r.raw", 16 * MIB, [(4 * MIB, pattern(MIB, 1))])
    with open_image(raw) as img:
        assert img.info().type == "raw"
        assert img.block_status(0).kind is ExtentKind.ZERO
        ext = img.block_status(4 * MIB)
        assert (ext.kind, ext.file_offset) == (ExtentKind.DATA, 4 * MIB)
        assert [m.data for m in image_map(img)] == [False, True, False]


@pytest.mark.parametrize("options", [[], ["-c"]], ids=["plain", "compressed"])
def test_qcow2_input_reads_like_qemu(tmp_path: Path, base_raw: Path, options: list[str]) -> None:
    q = tmp_path / "in.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", *options, base_raw, q)
    assert detect_format(str(q)) == "qcow2"
    with open_image(q) as img:
        assert img.virtual_size == 64 * MIB
        # plain: read in place through qemu-img map's host offsets; compressed: via a temp raw
        assert (img.path == str(q)) == (not options)
        write_raw(img, tmp_path / "out.raw")
    assert sha256_file(tmp_path / "out.raw") == sha256_file(base_raw)
    assert not Path(img.path).name.startswith("vhd-qcow2-") or not Path(img.path).exists()


def test_qcow2_with_backing_file_reads_the_whole_chain(tmp_path: Path, base_raw: Path) -> None:
    qemu_img("create", "-f", "qcow2", "-b", base_raw, "-F", "raw", tmp_path / "top.qcow2")
    with open_image(tmp_path / "top.qcow2") as img:
        write_raw(img, tmp_path / "out.raw")
    assert sha256_file(tmp_path / "out.raw") == sha256_file(base_raw)
    with pytest.raises(ImageUsageError, match="qcow2 images are read-only"):
        open_image(tmp_path / "top.qcow2", writable=True)


def test_fixed_vhd_write_and_read(tmp_path: Path) -> None:
    create_fixed(tmp_path / "f.vhd", 4 * MIB)
    with open_image(tmp_path / "f.vhd", writable=True) as img:
        img.write(MIB + 7, b"abc")
    make_raw(tmp_path / "want.raw", 4 * MIB, [(MIB + 7, b"abc")])
    qemu_img("compare", "-f", "vpc", "-F", "raw", tmp_path / "f.vhd", tmp_path / "want.raw")


def test_fixed_size_must_be_mib_multiple(tmp_path: Path) -> None:
    with pytest.raises(
        ImageUsageError,
        match=r"not a multiple of 1 MiB, which Azure requires;"
        r" round it up to 2097152",
    ):
        create_fixed(tmp_path / "f.vhd", MIB + 512)
