"""Dynamic VHDs (and the sparse machinery differencing VHDs inherit).

Layout: footer copy, dynamic header, BAT, [locator data], blocks (sector bitmap + data) in
any order, footer.  Open validates the header and every BAT entry (inside the file, clear of
the metadata and of each other) in one sorted pass, so a crafted BAT cannot make reads land
on metadata or make two blocks alias.

Allocating writes follow qemu's crash-safe order: block (bitmap + data) over the old
footer -> footer at the new end -> fsync -> BAT entry -> fsync.  In-memory state changes only
after every step succeeded, so a failed write leaves the object as it was (rollback).
"""

from __future__ import annotations

import bisect
import heapq
import operator
import struct
import sys
import uuid
from array import array
from collections.abc import Iterable, Iterator
from itertools import compress, islice

from ._format import (
    FOOTER_SIZE,
    HEADER_SIZE,
    SECTOR,
    UNALLOCATED,
    DynamicHeader,
    Footer,
    Locator,
    bitmap_size,
    parse_header,
)
from ._image import Extent, ExtentKind, ImageBase, ImageInfo, pread_exact
from .errors import ImageFormatError, TruncatedImageError

MAX_LOCATOR_LENGTH = 64 * 1024


class SparseMetadata:
    """Header, BAT and locators of a dynamic/differencing file, validated."""

    def __init__(self, header: DynamicHeader, bat: array[int], allocated: array[int]) -> None:
        self.header = header
        self.bat = bat
        self.allocated = allocated  # indices of allocated blocks, ascending


def load_metadata(
    path: str, fd: int, footer: Footer, file_size: int, *, strict: bool
) -> SparseMetadata:
    data_end = file_size - FOOTER_SIZE
    hdr_at = footer.data_offset
    if hdr_at + HEADER_SIZE > data_end:
        raise TruncatedImageError(
            f"dynamic header at offset {hdr_at} ends past the data area (file is {file_size}"
            " bytes): the file is truncated",
            field="data offset",
            offset=16,
            value=hdr_at,
        )
    header = parse_header(_read(path, fd, hdr_at, HEADER_SIZE), hdr_at, footer, strict=strict)
    table_bytes = header.max_table_entries * 4
    if header.table_offset < FOOTER_SIZE or header.table_offset + table_bytes > data_end:
        raise TruncatedImageError(
            f"BAT at offset {header.table_offset} ({header.max_table_entries} entries) does not"
            f" fit in the file ({file_size} bytes): the file is truncated or the table offset is"
            " wrong",
            field="table offset",
            offset=hdr_at + 16,
            value=header.table_offset,
        )
    bat: array[int] = array("I")
    bat.frombytes(_read(path, fd, header.table_offset, table_bytes))
    if sys.byteorder == "little":
        bat.byteswap()
    reserved = [
        (0, FOOTER_SIZE, "footer copy"),
        (hdr_at, HEADER_SIZE, "dynamic header"),
        (header.table_offset, _round_up(table_bytes), "BAT"),
    ]
    if footer.disk_type == 4:
        header = header.with_locator_data(
            _load_locators(path, fd, header, hdr_at, data_end, reserved)
        )
    # compress/map run in C: ~10x faster than a comprehension over a 1M-entry (2 TB) BAT
    allocated = array("I", compress(range(len(bat)), map(UNALLOCATED.__ne__, bat)))
    _check_layout(bat, allocated, header, data_end, reserved)
    return SparseMetadata(header, bat, allocated)


def _load_locators(
    path: str,
    fd: int,
    header: DynamicHeader,
    hdr_at: int,
    data_end: int,
    reserved: list[tuple[int, int, str]],
) -> tuple[Locator, ...]:
    out = []
    for i, loc in enumerate(header.locators):
        field_at = hdr_at + 576 + i * 24
        if (
            loc.data_length > MAX_LOCATOR_LENGTH
            or loc.data_offset < FOOTER_SIZE
            or loc.data_offset + loc.data_length > data_end
        ):
            raise ImageFormatError(
                f"parent locator {i} data (offset {loc.data_offset}, length {loc.data_length})"
                f" at header offset {field_at + 8} is outside the file's data area (0..{data_end})",
                field=f"parent locator {i} data offset",
                offset=field_at + 16,
                value=loc.data_offset,
            )
        data = _read(path, fd, loc.data_offset, loc.data_length)
        reserved.append((loc.data_offset, loc.data_length, f"parent locator {i}"))
        out.append(Locator(loc.code, loc.data_space, loc.data_length, loc.data_offset, data))
    return tuple(out)


def _check_layout(
    bat: array[int],
    allocated: array[int],
    header: DynamicHeader,
    data_end: int,
    reserved: list[tuple[int, int, str]],
) -> None:
    """Every block inside the file and overlapping nothing: one pass over sorted intervals."""
    span = bitmap_size(header.block_size) + header.block_size
    # Sorted by file position.  Blocks written in order (our writer, full copies) are
    # already sorted: checked in C without building a list, which for a full 2 TB BAT
    # would cost ~80 MiB of Python ints.
    positions = array("I", map(bat.__getitem__, allocated))
    in_order = all(map(operator.lt, positions, islice(positions, 1, None)))
    order: Iterable[int] = allocated if in_order else sorted(allocated, key=bat.__getitem__)
    block_iv: Iterator[tuple[int, int, str]] = (
        (bat[i] * SECTOR, span, f"block {i}") for i in order
    )
    meta_iv = sorted((s, n, what) for s, n, what in reserved if n > 0)
    prev_end, prev_what = 0, ""
    for start, length, what in heapq.merge(meta_iv, block_iv):
        if start < prev_end:
            raise ImageFormatError(
                f"{what} at offset {start} overlaps {prev_what} (which ends at {prev_end})",
                field="BAT entry" if what.startswith("block") else what,
                offset=start,
                value=start // SECTOR,
            )
        if start + length > data_end:
            index = int(what.split()[1]) if what.startswith("block") else -1
            raise TruncatedImageError(
                f"{what} at offset {start} ends at {start + length}, past the end of the data"
                f" area ({data_end}): BAT entry {index} points past the end of the file"
                if index >= 0
                else f"{what} at offset {start} ends past the data area",
                field="BAT entry",
                offset=header.table_offset + 4 * max(index, 0),
                value=start // SECTOR,
            )
        prev_end, prev_what = start + length, what


class DynamicImage(ImageBase):
    """A sparse VHD whose unallocated blocks read as zeros."""

    type_name = "dynamic"
    hole_kind = ExtentKind.ZERO

    def __init__(
        self,
        path: str,
        fd: int,
        writable: bool,
        footer: Footer,
        footer_raw: bytes,
        meta: SparseMetadata,
        file_size: int,
    ) -> None:
        super().__init__(path, fd, writable)
        self.footer = footer
        self.header = meta.header
        self.virtual_size = footer.current_size
        self.block_size = meta.header.block_size
        self._footer_raw = footer_raw
        self._bat = meta.bat
        self._bitmap_size = bitmap_size(self.block_size)
        self._allocated = meta.allocated
        self._end = file_size - FOOTER_SIZE  # where the trailing footer lives

    # -- reading ---------------------------------------------------------------------------

    def info(self) -> ImageInfo:
        return ImageInfo(
            path=self.path,
            type=self.type_name,
            virtual_size=self.virtual_size,
            block_size=self.block_size,
            file_size=self._end + FOOTER_SIZE,
            unique_id=str(uuid.UUID(bytes=self.footer.unique_id)),
            timestamp=self.footer.timestamp,
            creator=f"{self.footer.creator_app.decode('latin-1')!r}",
            allocated_blocks=len(self._allocated),
        )

    def allocated_blocks(self) -> list[int]:
        """Indices of blocks stored in this file, ascending."""
        return self._allocated.tolist()

    def block_status(self, offset: int) -> Extent:
        self._check_range(offset, 1)
        index, within = divmod(offset, self.block_size)
        entry = self._bat[index]
        if entry == UNALLOCATED:
            nxt = bisect.bisect_right(self._allocated, index)
            end = self._allocated[nxt] * self.block_size if nxt < len(self._allocated) else None
            end = self.virtual_size if end is None else min(end, self.virtual_size)
            return Extent(self.hole_kind, end - offset)
        limit = min(self.block_size - within, self.virtual_size - offset)
        return self._allocated_status(index, entry, within, limit)

    def _allocated_status(self, index: int, entry: int, within: int, limit: int) -> Extent:
        # Like qemu, ignore the bitmap of a dynamic disk: writers set it all ones.
        return Extent(ExtentKind.DATA, limit, self._data_offset(entry) + within)

    def _data_offset(self, entry: int) -> int:
        return entry * SECTOR + self._bitmap_size

    # -- writing ---------------------------------------------------------------------------

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._check_writable()
        view = memoryview(data).cast("B")
        self._check_range(offset, len(view))
        pos = 0
        while pos < len(view):
            index, within = divmod(offset + pos, self.block_size)
            n = min(self.block_size - within, len(view) - pos)
            self._write_in_block(index, within, view[pos : pos + n])
            pos += n

    def _write_in_block(self, index: int, within: int, data: memoryview) -> None:
        entry = self._bat[index]
        if entry == UNALLOCATED:
            block = bytearray(self.block_size)
            block[within : within + len(data)] = data
            self._allocate(index, self._full_bitmap(), block)
        else:
            self._pwrite(data, self._data_offset(entry) + within)

    def _full_bitmap(self) -> bytes:
        bits = self.block_size // SECTOR
        used = bits // 8
        return b"\xff" * used + bytes(self._bitmap_size - used)

    def _allocate(self, index: int, bitmap: bytes, block: bytearray) -> None:
        start = self._end
        new_end = start + self._bitmap_size + self.block_size
        entry = start // SECTOR
        # If any step fails, the on-disk BAT still says "unallocated" and the in-memory state
        # below is untouched: the next allocation reuses ``start`` (rollback by construction).
        self._pwrite(bitmap + bytes(block), start)
        self._pwrite(self._footer_raw, new_end)
        self.flush()
        self._pwrite(struct.pack(">I", entry), self.header.table_offset + 4 * index)
        self.flush()
        self._end = new_end
        self._bat[index] = entry
        bisect.insort(self._allocated, index)


def _round_up(n: int) -> int:
    return -(-n // SECTOR) * SECTOR


def _read(path: str, fd: int, offset: int, length: int) -> bytes:
    buf = bytearray(length)
    pread_exact(fd, memoryview(buf), offset, path)
    return bytes(buf)
