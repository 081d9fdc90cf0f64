"""Fixed and dynamic VHDs against qemu-img, both ways, plus golden allocation maps."""

from __future__ import annotations

from pathlib import Path

import pytest
from cloudservice.vhd import (
    DynamicImage,
    ExtentKind,
    FixedImage,
    coalesce,
    create_dynamic,
    create_fixed,
    image_map,
    open_image,
    write_raw,
)
from vhd_helpers import MIB, make_raw, pattern, qemu_img, qemu_json, sha256_file


def _to_vhd(raw: Path, out: Path, subformat: str) -> Path:
    qemu_img(
        "convert", "-f", "raw", "-O", "vpc", "-o", f"subformat={subformat},force_size=on", raw, out
    )
    return out


@pytest.mark.parametrize("subformat", ["dynamic", "fixed"])
def test_we_read_what_qemu_writes(tmp_path: Path, base_raw: Path, subformat: str) -> None:
    vhd = _to_vhd(base_raw, tmp_path / "q.vhd", subformat)
    with open_image(vhd) as img:
        assert isinstance(img, DynamicImage if subformat == "dynamic" else FixedImage)
        assert img.virtual_size == 64 * MIB
        out = tmp_path / "back.raw"
        write_raw(img, out)
    assert sha256_file(out) == sha256_file(base_raw)


# Golden map of the qemu-written dynamic image of ``base_raw``: qemu allocates the blocks
# holding data (2 MiB each) and we must report exactly those as DATA, the rest as ZERO.
GOLDEN_DYNAMIC_MAP = [
    {"start": 0, "length": 4 * MIB, "depth": 0, "data": True, "zero": False},
    {"start": 4 * MIB, "length": 6 * MIB, "depth": 0, "data": False, "zero": True},
    {"start": 10 * MIB, "length": 2 * MIB, "depth": 0, "data": True, "zero": False},
    {"start": 12 * MIB, "length": 50 * MIB, "depth": 0, "data": False, "zero": True},
    {"start": 62 * MIB, "length": 2 * MIB, "depth": 0, "data": True, "zero": False},
]


def test_golden_map_of_qemu_dynamic_image(tmp_path: Path, base_raw: Path) -> None:
    vhd = _to_vhd(base_raw, tmp_path / "q.vhd", "dynamic")
    with open_image(vhd) as img:
        ours = [m.as_dict() for m in image_map(img)]
    assert ours == GOLDEN_DYNAMIC_MAP
    theirs = qemu_json("map", "-f", "vpc", vhd)
    assert isinstance(theirs, list)
    assert _merged_data(theirs) == [(m["start"], m["length"]) for m in ours if m["data"]]


def _merged_data(entries: list[dict[str, int]]) -> list[tuple[int, int]]:
    """qemu's data ranges, adjacent ones merged (qemu splits where file offsets jump)."""
    out: list[tuple[int, int]] = []
    for e in entries:
        if not e["data"]:
            continue
        if out and out[-1][0] + out[-1][1] == e["start"]:
            out[-1] = (out[-1][0], out[-1][1] + e["length"])
        else:
            out.append((e["start"], e["length"]))
    return out


def test_block_status_reports_file_offsets_like_qemu(tmp_path: Path, base_raw: Path) -> None:
    vhd = _to_vhd(base_raw, tmp_path / "q.vhd", "dynamic")
    theirs = qemu_json("map", "-f", "vpc", vhd)
    assert isinstance(theirs, list)
    with open_image(vhd) as img:
        for entry in theirs:
            ext = img.block_status(entry["start"])
            if entry["data"]:
                assert ext.kind is ExtentKind.DATA and ext.file_offset == entry["offset"]
            else:
                assert ext.kind is ExtentKind.ZERO


@pytest.mark.parametrize("fixed", [False, True])
def test_qemu_reads_what_we_write(tmp_path: Path, base_raw: Path, fixed: bool) -> None:
    with open_image(base_raw, format="raw") as src:
        coalesce(src, tmp_path / "ours.vhd", fixed=fixed)
    info = qemu_json("info", "-f", "vpc", tmp_path / "ours.vhd")
    assert isinstance(info, dict)
    assert info["virtual-size"] == 64 * MIB  # creator 'win ': qemu uses current_size, not CHS
    qemu_img("compare", "-f", "vpc", "-F", "raw", tmp_path / "ours.vhd", base_raw)
    qemu_img("compare", "-f", "raw", "-F", "vpc", base_raw, tmp_path / "ours.vhd")


def test_our_fixed_vhd_has_azure_layout(tmp_path: Path) -> None:
    create_fixed(tmp_path / "f.vhd", 16 * MIB)
    assert (tmp_path / "f.vhd").stat().st_size == 16 * MIB + 512
    with open_image(tmp_path / "f.vhd") as img:
        assert img.info().type == "fixed"
        assert img.block_status(0).kind is ExtentKind.ZERO  # sparse on disk: never read


def test_qemu_sees_our_writes_through_image_write(tmp_path: Path) -> None:
    create_dynamic(tmp_path / "d.vhd", 8 * MIB)
    data = pattern(3 * 4096 + 100, 7)
    with open_image(tmp_path / "d.vhd", writable=True) as img:
        img.write(2 * MIB - 4096, data)  # spans two blocks, allocates both
        img.write(100, b"hello")
    make_raw(tmp_path / "want.raw", 8 * MIB, [(2 * MIB - 4096, data), (100, b"hello")])
    qemu_img("compare", "-f", "vpc", "-F", "raw", tmp_path / "d.vhd", tmp_path / "want.raw")


def test_qemu_sizes_by_chs_without_force_size_and_we_agree(tmp_path: Path) -> None:
    make_raw(tmp_path / "r.raw", 64 * MIB, [(MIB, b"x" * 512)])
    qemu_img("convert", "-f", "raw", "-O", "vpc", tmp_path / "r.raw", tmp_path / "chs.vhd")
    info = qemu_json("info", "-f", "vpc", tmp_path / "chs.vhd")
    assert isinstance(info, dict)
    with open_image(tmp_path / "chs.vhd") as img:
        # creator 'qemu': both qemu and the footer's current size say the CHS-rounded size
        assert img.virtual_size == info["virtual-size"]
        assert img.read(MIB, 512) == b"x" * 512
