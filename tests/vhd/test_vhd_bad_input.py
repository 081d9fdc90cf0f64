"""Every kind of bad input gets one clear error naming the field and value, never a crash."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from cloudservice.vhd import (
    ChecksumError,
    ImageFormatError,
    TruncatedImageError,
    VhdWriter,
    create_fixed,
    open_image,
)
from cloudservice.vhd._format import checksum
from cloudservice.vhd._writer import ParentRef
from vhd_helpers import MIB, pattern

# Arguments of the Python API that a user of the CLI or the provider cannot set: no message
# may tell them to use one.
INTERNAL_NAMES = ("strict", "resolve_parent", "writable", "parent=", "parent_unique_id")
SIZE = 8 * MIB  # 4 blocks of 2 MiB; BAT at 1536; with 2 blocks the trailing footer is at 4197376


def _dynamic(path: Path, blocks: tuple[int, ...] = (0, 2)) -> Path:
    with VhdWriter(path, SIZE) as w:
        for b in blocks:
            w.write_block(b, pattern(4096, b))
    return path


def _patch_footers(path: Path, at: int, value: bytes, fix_sum: bool = True) -> None:
    data = bytearray(path.read_bytes())
    for base in (0, len(data) - 512):
        data[base + at : base + at + len(value)] = value
        if fix_sum:
            struct.pack_into(">I", data, base + 64, checksum(data[base : base + 512], 64))
    path.write_bytes(bytes(data))


def _patch_header(path: Path, at: int, value: bytes, fix_sum: bool = True) -> None:
    data = bytearray(path.read_bytes())
    data[512 + at : 512 + at + len(value)] = value
    if fix_sum:
        struct.pack_into(">I", data, 512 + 36, checksum(data[512:1536], 36))
    path.write_bytes(bytes(data))


def _patch_bat(path: Path, index: int, entry: int) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into(">I", data, 1536 + 4 * index, entry)
    path.write_bytes(bytes(data))


def _truncate(n: int) -> Callable[[Path], None]:
    def cut(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - n] if n > 0 else data[:-n])

    return cut


CASES: list[tuple[str, Callable[[Path], None], type[Exception], str]] = [
    (
        "truncated",
        _truncate(1000),
        TruncatedImageError,
        r"no footer at the end of the file .* truncated or its end is damaged .*; copy the"
        r" image again from its source$",
    ),
    ("tiny", _truncate(-100), TruncatedImageError, r"file is 100 bytes, smaller than a VHD footer"),
    (
        "cookie",
        lambda p: _patch_footers(p, 0, b"notavhd!"),
        ImageFormatError,
        r"no 'conectix' cookie at offset 0 or at offset \d+ .*not a VHD file",
    ),
    (
        "footer checksum",
        lambda p: _patch_footers(p, 64, b"\0\0\0\1", fix_sum=False),
        ChecksumError,
        r"footer checksum at offset \d+ is 0x00000001, computed 0x[0-9a-f]{8}: the footer is"
        r" damaged .*; copy the image again from its source$",
    ),
    (
        "header checksum",
        lambda p: _patch_header(p, 36, b"\0\0\0\1", fix_sum=False),
        ChecksumError,
        r"dynamic header checksum at offset 548 is 0x00000001, computed 0x[0-9a-f]{8}: the"
        r" header is damaged .*; copy the image again from its source$",
    ),
    (
        "header cookie",
        lambda p: _patch_header(p, 0, b"sparsecx"),
        ImageFormatError,
        r"dynamic header cookie at offset 512 is b'sparsecx'",
    ),
    (
        "block size not power of two",
        lambda p: _patch_header(p, 32, struct.pack(">I", 3000)),
        ImageFormatError,
        r"block size at offset 544 is 3000: must be a power of two",
    ),
    (
        "absurd block size",
        lambda p: _patch_header(p, 32, struct.pack(">I", 1 << 30)),
        ImageFormatError,
        r"block size at offset 544 is 0x40000000: must be a power of two between",
    ),
    (
        "table size",
        lambda p: _patch_header(p, 28, struct.pack(">I", 5)),
        ImageFormatError,
        r"max table entries at offset 540 is 5: a 8388608-byte disk with 2097152-byte blocks"
        r" needs 4",
    ),
    (
        "table offset",
        lambda p: _patch_header(p, 16, struct.pack(">Q", 1 << 40)),
        TruncatedImageError,
        r"BAT at offset 1099511627776 \(4 entries\) does not fit",
    ),
    (
        "size over 2040 GiB",
        lambda p: _patch_footers(p, 48, struct.pack(">Q", 2041 << 30)),
        ImageFormatError,
        r"current size at offset 4197424 is 0x1fe40000000: must be between 1 and",
    ),
    (
        "disk type",
        lambda p: _patch_footers(p, 60, struct.pack(">I", 5)),
        ImageFormatError,
        r"disk type at offset 4197436 is 5: expected 2 \(fixed\)",
    ),
    (
        "version",
        lambda p: _patch_footers(p, 12, struct.pack(">I", 0x20000)),
        ImageFormatError,
        r"file format version at offset 4197388 is 0x20000",
    ),
    (
        "BAT past end",
        lambda p: _patch_bat(p, 1, 0x100000),
        TruncatedImageError,
        r"block 1 at offset 536870912 ends at \d+, past the end of the data area .*BAT entry 1",
    ),
    (
        "BAT overlap",
        lambda p: _patch_bat(p, 1, 5),
        ImageFormatError,
        r"block \d at offset 2560 overlaps block \d",
    ),
    (
        "BAT into metadata",
        lambda p: _patch_bat(p, 1, 2),
        ImageFormatError,
        r"block 1 at offset 1024 overlaps (dynamic header|footer copy)",
    ),
    (
        "footer copy differs",
        lambda p: _patch_head_only(p),
        ImageFormatError,
        r"footer copy at offset 0 differs from the footer at offset \d+ \(first difference at"
        r" byte 24\)",
    ),
]


def _patch_head_only(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[24:28] = b"\0\0\0\1"
    struct.pack_into(">I", data, 64, checksum(data[:512], 64))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name, damage, exc, message", CASES, ids=[c[0] for c in CASES])
def test_bad_dynamic_input(
    tmp_path: Path, name: str, damage: Callable[[Path], None], exc: type[Exception], message: str
) -> None:
    path = _dynamic(tmp_path / "d.vhd", blocks=(0, 2) if name != "BAT overlap" else (0,))
    if name == "BAT overlap":
        _patch_bat(path, 0, 4)  # block 0 at sector 4 (2048)... and block 1 at sector 5
    damage(path)
    with pytest.raises(exc, match=message) as info:
        open_image(path, format="vhd").close()
    assert str(info.value).startswith(f"{path}: ")  # the file, then what is wrong with it
    assert not [name for name in INTERNAL_NAMES if name in str(info.value)]


def test_bad_checksum_is_accepted_with_strict_false(tmp_path: Path) -> None:
    path = _dynamic(tmp_path / "d.vhd")
    _patch_footers(path, 64, b"\0\0\0\1", fix_sum=False)
    _patch_header(path, 36, b"\0\0\0\1", fix_sum=False)
    with open_image(path, strict=False) as img:
        assert img.read(0, 4096) == pattern(4096, 0)


def test_truncated_dynamic_is_readable_from_footer_copy_when_not_strict(tmp_path: Path) -> None:
    path = _dynamic(tmp_path / "d.vhd", blocks=(0,))
    _truncate(512)(path)  # only the trailing footer lost
    with open_image(path, strict=False) as img:
        assert img.read(0, 4096) == pattern(4096, 0)


def test_locator_out_of_range(tmp_path: Path) -> None:
    _dynamic(tmp_path / "p.vhd")
    with (
        open_image(tmp_path / "p.vhd") as p,
        VhdWriter(tmp_path / "c.vhd", SIZE, parent=ParentRef.of(p, str(tmp_path / "c.vhd"))),
    ):
        pass
    _patch_header(tmp_path / "c.vhd", 576 + 16, struct.pack(">Q", 1 << 33))
    with pytest.raises(
        ImageFormatError,
        match=r"parent locator 0 data \(offset 8589934592,"
        r" length \d+\) at header offset 1096 is outside",
    ):
        open_image(tmp_path / "c.vhd")


def test_unknown_locator_platform(tmp_path: Path) -> None:
    _dynamic(tmp_path / "p.vhd")
    with (
        open_image(tmp_path / "p.vhd") as p,
        VhdWriter(tmp_path / "c.vhd", SIZE, parent=ParentRef.of(p, str(tmp_path / "c.vhd"))),
    ):
        pass
    _patch_header(tmp_path / "c.vhd", 576, b"ABCD")
    with pytest.raises(
        ImageFormatError,
        match=r"parent locator 0 platform code at offset 1088"
        r" is 0x41424344: unknown platform code",
    ):
        open_image(tmp_path / "c.vhd")


def test_fixed_with_wrong_size(tmp_path: Path) -> None:
    create_fixed(tmp_path / "f.vhd", 2 * MIB)
    data = (tmp_path / "f.vhd").read_bytes()
    (tmp_path / "f.vhd").write_bytes(data[:MIB] + data[-512:])
    with pytest.raises(
        TruncatedImageError,
        match=r"current size at offset 1048624 is 2097152"
        r" but the fixed disk holds 1048576 bytes",
    ):
        open_image(tmp_path / "f.vhd")


def test_huge_claims_do_not_allocate(tmp_path: Path) -> None:
    """A 2040 GiB claim in a tiny file fails fast on the BAT bounds, with no big buffer."""
    path = _dynamic(tmp_path / "d.vhd", blocks=())
    entries = (2040 << 30) // (2 * MIB)
    _patch_footers(path, 48, struct.pack(">Q", 2040 << 30))
    _patch_header(path, 28, struct.pack(">I", entries))
    with pytest.raises(TruncatedImageError, match=r"BAT at offset 1536 \(1044480 entries\)"):
        open_image(path)
