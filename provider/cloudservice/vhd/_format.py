"""VHD on-disk structures: footer, dynamic header, parent locators, BAT (all big-endian).

Parsing validates every field and raises an ``ImageFormatError`` that names the field, its
value and its absolute byte offset; packing produces bytes with a correct checksum.
The layouts follow Microsoft's "Virtual Hard Disk Image Format Specification" v1.0 (2006);
docs/vhd.md lists the choices made where the specification and the tools differ.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field, replace

from .errors import ChecksumError, ImageFormatError

SECTOR = 512
FOOTER_SIZE = 512
HEADER_SIZE = 1024
FOOTER_COOKIE = b"conectix"
HEADER_COOKIE = b"cxsparse"
FORMAT_VERSION = 0x00010000
NO_OFFSET = 0xFFFFFFFFFFFFFFFF
UNALLOCATED = 0xFFFFFFFF
FEATURE_TEMPORARY = 0x1
FEATURE_RESERVED = 0x2
DISK_FIXED, DISK_DYNAMIC, DISK_DIFFERENCING = 2, 3, 4
DISK_TYPE_NAMES = {DISK_FIXED: "fixed", DISK_DYNAMIC: "dynamic", DISK_DIFFERENCING: "differencing"}
MAX_VIRTUAL_SIZE = 2040 * 1024**3  # qemu and Hyper-V refuse more for VHD
MIN_BLOCK_SIZE = SECTOR
# Larger blocks are legal in theory but no writer uses them; capping keeps per-block buffers
# (and so memory) bounded whatever a crafted header says.
MAX_BLOCK_SIZE = 64 * 1024**2
DEFAULT_BLOCK_SIZE = 2 * 1024**2
VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z in unix seconds

_FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427x")
_HEADER = struct.Struct(">8sQQIIII16sI4x512s192s256x")
_LOCATOR = struct.Struct(">IIII Q")
LOCATOR_COUNT = 8
HEADER_LOCATORS_OFFSET = 576

# Platform codes for parent locators.
PLAT_W2RU = 0x57327275  # relative Windows path, UTF-16LE
PLAT_W2KU = 0x57326B75  # absolute Windows path, UTF-16LE
PLAT_MACX = 0x4D616358  # file URL, UTF-8
_KNOWN_PLATFORMS = {0, 0x57693272, 0x5769326B, PLAT_W2RU, PLAT_W2KU, 0x4D616320, PLAT_MACX}


def checksum(data: bytes | bytearray, field_at: int) -> int:
    """One's complement of the byte sum, with the 4-byte checksum field at ``field_at`` zeroed."""
    total = sum(data) - sum(data[field_at : field_at + 4])
    return ~total & 0xFFFFFFFF


def vhd_timestamp(unix_seconds: float | None = None) -> int:
    """Seconds since 2000-01-01 UTC, as the footer and header store them."""
    now = time.time() if unix_seconds is None else unix_seconds
    return max(0, int(now) - VHD_EPOCH) & 0xFFFFFFFF


def chs_geometry(size: int) -> tuple[int, int, int]:
    """Cylinders, heads, sectors/track by the algorithm in the spec's appendix."""
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


def bitmap_size(block_size: int) -> int:
    """Bytes of a block's sector bitmap, padded to whole sectors."""
    raw = -(-block_size // SECTOR // 8)
    return -(-raw // SECTOR) * SECTOR


def table_entries(virtual_size: int, block_size: int) -> int:
    return -(-virtual_size // block_size)


@dataclass(frozen=True)
class Footer:
    """The 512-byte hard disk footer."""

    disk_type: int
    current_size: int
    unique_id: bytes
    data_offset: int = NO_OFFSET
    timestamp: int = 0
    # "win " makes qemu size the disk from current_size instead of CHS (qemu's vpc.c
    # trusts current_size only for known creators); Hyper-V and Azure accept it.
    creator_app: bytes = b"win "
    creator_version: int = 0x000A0000
    creator_os: bytes = b"Wi2k"
    original_size: int = -1
    geometry: tuple[int, int, int] = (0, 0, 0)
    features: int = FEATURE_RESERVED
    version: int = FORMAT_VERSION
    saved_state: int = 0
    checksum: int = 0

    def __post_init__(self) -> None:
        if self.original_size < 0:
            object.__setattr__(self, "original_size", self.current_size)
        if self.geometry == (0, 0, 0):
            object.__setattr__(self, "geometry", chs_geometry(self.current_size))

    @property
    def type_name(self) -> str:
        return DISK_TYPE_NAMES.get(self.disk_type, str(self.disk_type))

    def pack(self) -> bytes:
        cyl, heads, spt = self.geometry
        values = (
            FOOTER_COOKIE,
            self.features,
            self.version,
            self.data_offset,
            self.timestamp,
            self.creator_app,
            self.creator_version,
            self.creator_os,
            self.original_size,
            self.current_size,
            cyl,
            heads,
            spt,
            self.disk_type,
            0,
            self.unique_id,
            self.saved_state,
        )
        raw = bytearray(_FOOTER.pack(*values))
        struct.pack_into(">I", raw, 64, checksum(raw, 64))
        return bytes(raw)


def parse_footer(buf: bytes, at: int, *, strict: bool = True) -> Footer:
    """Parse and validate a footer read from absolute offset ``at``."""
    if len(buf) < FOOTER_SIZE:
        raise ImageFormatError(
            f"footer at offset {at} is {len(buf)} bytes, need {FOOTER_SIZE}",
            field="footer",
            offset=at,
            value=len(buf),
        )
    (
        cookie,
        features,
        version,
        data_offset,
        timestamp,
        creator_app,
        creator_version,
        creator_os,
        original_size,
        current_size,
        cyl,
        heads,
        spt,
        disk_type,
        stored_sum,
        unique_id,
        saved_state,
    ) = _FOOTER.unpack_from(buf)
    if cookie != FOOTER_COOKIE:
        raise ImageFormatError(
            f"footer cookie at offset {at} is {cookie!r}, expected {FOOTER_COOKIE!r}: not a VHD",
            field="cookie",
            offset=at,
            value=cookie,
        )
    want = checksum(buf[:FOOTER_SIZE], 64)
    if stored_sum != want and strict:
        raise ChecksumError(
            f"footer checksum at offset {at + 64} is 0x{stored_sum:08x}, computed 0x{want:08x}:"
            " the footer is damaged (an interrupted or corrupted copy, usually); copy the image"
            " again from its source",
            field="checksum",
            offset=at + 64,
            value=stored_sum,
        )
    _check(
        version == FORMAT_VERSION,
        "file format version",
        at + 12,
        version,
        f"expected 0x{FORMAT_VERSION:08x}",
    )
    _check(
        features & ~(FEATURE_TEMPORARY | FEATURE_RESERVED) == 0,
        "features",
        at + 8,
        features,
        "unknown feature bits set",
    )
    _check(
        disk_type in DISK_TYPE_NAMES,
        "disk type",
        at + 60,
        disk_type,
        "expected 2 (fixed), 3 (dynamic) or 4 (differencing)",
    )
    _check(
        0 < current_size <= MAX_VIRTUAL_SIZE,
        "current size",
        at + 48,
        current_size,
        f"must be between 1 and {MAX_VIRTUAL_SIZE} bytes (2040 GiB)",
    )
    _check(
        current_size % SECTOR == 0,
        "current size",
        at + 48,
        current_size,
        "must be a multiple of 512",
    )
    _check(saved_state in (0, 1), "saved state", at + 84, saved_state, "expected 0 or 1")
    if disk_type == DISK_FIXED:
        _check(
            data_offset in (NO_OFFSET, 0xFFFFFFFF),
            "data offset",
            at + 16,
            data_offset,
            "a fixed disk has no dynamic header (expected 0xFFFFFFFFFFFFFFFF)",
        )
    else:
        _check(
            data_offset % SECTOR == 0 and data_offset >= FOOTER_SIZE,
            "data offset",
            at + 16,
            data_offset,
            "must be a sector-aligned offset after the footer copy",
        )
    return Footer(
        disk_type=disk_type,
        current_size=current_size,
        unique_id=unique_id,
        data_offset=data_offset,
        timestamp=timestamp,
        creator_app=creator_app,
        creator_version=creator_version,
        creator_os=creator_os,
        original_size=original_size,
        geometry=(cyl, heads, spt),
        features=features,
        version=version,
        saved_state=saved_state,
        checksum=stored_sum,
    )


@dataclass(frozen=True)
class Locator:
    """One parent locator entry; ``data`` is the raw platform data (read separately)."""

    code: int
    data_space: int
    data_length: int
    data_offset: int
    data: bytes = b""

    def path(self) -> str | None:
        """Decoded path, or None for platforms that hold no usable path."""
        try:
            if self.code in (PLAT_W2RU, PLAT_W2KU):
                return self.data.decode("utf-16-le").rstrip("\0")
            if self.code == PLAT_MACX:
                text = self.data.decode("utf-8").rstrip("\0")
                return text.removeprefix("file://")
        except UnicodeDecodeError:
            return None
        return None


@dataclass(frozen=True)
class DynamicHeader:
    """The 1024-byte dynamic disk header."""

    table_offset: int
    max_table_entries: int
    block_size: int
    parent_unique_id: bytes = bytes(16)
    parent_timestamp: int = 0
    parent_name: str = ""
    locators: tuple[Locator, ...] = field(default_factory=tuple)
    data_offset: int = NO_OFFSET
    version: int = FORMAT_VERSION
    checksum: int = 0

    def pack(self) -> bytes:
        name = self.parent_name.encode("utf-16-be")
        if len(name) > 512:
            raise ImageFormatError(
                f"parent name {self.parent_name!r} is longer than 256 UTF-16 units",
                field="parent unicode name",
                value=self.parent_name,
            )
        locs = b"".join(
            _LOCATOR.pack(loc.code, loc.data_space, loc.data_length, 0, loc.data_offset)
            for loc in self.locators
        ).ljust(192, b"\0")
        raw = bytearray(
            _HEADER.pack(
                HEADER_COOKIE,
                self.data_offset,
                self.table_offset,
                self.version,
                self.max_table_entries,
                self.block_size,
                0,
                self.parent_unique_id,
                self.parent_timestamp,
                name,
                locs,
            )
        )
        struct.pack_into(">I", raw, 36, checksum(raw, 36))
        return bytes(raw)

    def with_locator_data(self, locators: tuple[Locator, ...]) -> DynamicHeader:
        return replace(self, locators=locators)


def parse_header(buf: bytes, at: int, footer: Footer, *, strict: bool = True) -> DynamicHeader:
    """Parse and validate the dynamic header read from ``at`` against its footer."""
    if len(buf) < HEADER_SIZE:
        raise ImageFormatError(
            f"dynamic header at offset {at} is cut short ({len(buf)} of {HEADER_SIZE} bytes)",
            field="dynamic header",
            offset=at,
            value=len(buf),
        )
    (
        cookie,
        data_offset,
        table_offset,
        version,
        entries,
        block_size,
        stored_sum,
        parent_uid,
        parent_ts,
        name_raw,
        locs_raw,
    ) = _HEADER.unpack_from(buf)
    if cookie != HEADER_COOKIE:
        raise ImageFormatError(
            f"dynamic header cookie at offset {at} is {cookie!r}, expected {HEADER_COOKIE!r}",
            field="cookie",
            offset=at,
            value=cookie,
        )
    want = checksum(buf[:HEADER_SIZE], 36)
    if stored_sum != want and strict:
        raise ChecksumError(
            f"dynamic header checksum at offset {at + 36} is 0x{stored_sum:08x}, computed"
            f" 0x{want:08x}: the header is damaged (an interrupted or corrupted copy, usually);"
            " copy the image again from its source",
            field="checksum",
            offset=at + 36,
            value=stored_sum,
        )
    _check(
        version == FORMAT_VERSION,
        "header version",
        at + 24,
        version,
        f"expected 0x{FORMAT_VERSION:08x}",
    )
    _check(
        data_offset in (NO_OFFSET, 0xFFFFFFFF),
        "header data offset",
        at + 8,
        data_offset,
        "expected 0xFFFFFFFFFFFFFFFF (no further structure)",
    )
    _check(
        MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE and block_size & (block_size - 1) == 0,
        "block size",
        at + 32,
        block_size,
        f"must be a power of two between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE}",
    )
    want_entries = table_entries(footer.current_size, block_size)
    _check(
        entries == want_entries,
        "max table entries",
        at + 28,
        entries,
        f"a {footer.current_size}-byte disk with {block_size}-byte blocks needs {want_entries}",
    )
    _check(
        table_offset % SECTOR == 0, "table offset", at + 16, table_offset, "must be sector aligned"
    )
    try:
        name = name_raw.decode("utf-16-be").split("\0", 1)[0]
    except UnicodeDecodeError:
        raise ImageFormatError(
            f"parent unicode name at offset {at + 64} is not valid UTF-16BE",
            field="parent unicode name",
            offset=at + 64,
            value=name_raw[:32],
        ) from None
    locators = []
    for i in range(LOCATOR_COUNT):
        loc_at = at + HEADER_LOCATORS_OFFSET + i * _LOCATOR.size
        code, space, length, _reserved, offset = _LOCATOR.unpack_from(locs_raw, i * _LOCATOR.size)
        if code == 0:
            continue
        _check(
            code in _KNOWN_PLATFORMS,
            f"parent locator {i} platform code",
            loc_at,
            code,
            "unknown platform code",
        )
        locators.append(Locator(code, space, length, offset))
    return DynamicHeader(
        table_offset=table_offset,
        max_table_entries=entries,
        block_size=block_size,
        parent_unique_id=parent_uid,
        parent_timestamp=parent_ts,
        parent_name=name,
        locators=tuple(locators),
        data_offset=data_offset,
        version=version,
        checksum=stored_sum,
    )


def _check(ok: bool, name: str, offset: int, value: object, why: str) -> None:
    if not ok:
        shown = f"0x{value:x}" if isinstance(value, int) and value > 0xFFFF else repr(value)
        raise ImageFormatError(
            f"{name} at offset {offset} is {shown}: {why}", field=name, offset=offset, value=value
        )
