"""Differencing VHDs: a dynamic layout whose holes and clear bitmap bits mean "ask the parent".

Sector ``i`` of an allocated block is in this file only when bit ``i`` (MSB first) of the
block's bitmap is set; otherwise, like an unallocated block, it is BACKING.  Data under a
clear bit is garbage and never returned.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from ._dynamic import DynamicImage
from ._format import SECTOR
from ._image import Extent, ExtentKind, Image, ImageInfo
from .errors import ChainError

_BITMAP_CACHE_BLOCKS = 256


class DifferencingImage(DynamicImage):
    type_name = "differencing"
    hole_kind = ExtentKind.BACKING

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parent_image: Image | None = None
        self._bitmaps: dict[int, bytearray] = {}

    @property
    def parent(self) -> Image | None:
        return self._parent_image

    def attach_parent(self, parent: Image) -> None:
        """Set the (already verified) parent this child reads through."""
        self._parent_image = parent

    @property
    def parent_unique_id(self) -> bytes:
        return self.header.parent_unique_id

    def parent_paths(self) -> list[str]:
        """Candidate parent paths from the locators, in the order they should be tried."""
        return [p for p in (loc.path() for loc in self.header.locators) if p]

    def info(self) -> ImageInfo:
        return replace(
            super().info(),
            parent_unique_id=str(uuid.UUID(bytes=self.header.parent_unique_id)),
            parent_name=self.header.parent_name,
            parent_locators=tuple(self.parent_paths()),
        )

    def readinto(self, offset: int, buf: memoryview) -> None:
        if self._parent_image is None:
            raise ChainError(
                f"{self.path}: differencing disk opened without its parent; "
                "open it with parent= (or let open_image find it) to read it"
            )
        super().readinto(offset, buf)

    # -- bitmaps ---------------------------------------------------------------------------

    def _bitmap(self, index: int, entry: int) -> bytearray:
        cached = self._bitmaps.get(index)
        if cached is None:
            if len(self._bitmaps) >= _BITMAP_CACHE_BLOCKS:
                self._bitmaps.clear()
            cached = bytearray(self._bitmap_size)
            self._pread(memoryview(cached), entry * SECTOR)
            self._bitmaps[index] = cached
        return cached

    def sector_bitmap(self, index: int) -> bytes | None:
        """The raw bitmap of block ``index``, or None if the block is not allocated."""
        entry = self._bat[index]
        return None if entry == 0xFFFFFFFF else bytes(self._bitmap(index, entry))

    def _allocated_status(self, index: int, entry: int, within: int, limit: int) -> Extent:
        bitmap = self._bitmap(index, entry)
        sectors = self.block_size // SECTOR
        first = within // SECTOR
        present, run = bit_run(bitmap, first, sectors)
        length = min(run * SECTOR - within % SECTOR, limit)
        if present:
            return Extent(ExtentKind.DATA, length, self._data_offset(entry) + within)
        return Extent(ExtentKind.BACKING, length)

    # -- writing ---------------------------------------------------------------------------

    def _write_in_block(self, index: int, within: int, data: memoryview) -> None:
        # Whole sectors only: a partial sector is completed from what the chain reads now.
        first = within // SECTOR
        last = -(-(within + len(data)) // SECTOR)
        base = index * self.block_size + first * SECTOR
        sectors = bytearray(min((last - first) * SECTOR, self.virtual_size - base))
        if within % SECTOR or len(sectors) != len(data):
            self.readinto(base, memoryview(sectors))
        lead = within - first * SECTOR
        sectors[lead : lead + len(data)] = data
        entry = self._bat[index]
        if entry == 0xFFFFFFFF:
            bitmap = bytearray(self._bitmap_size)
            set_bits(bitmap, first, last - first)
            block = bytearray(self.block_size)
            block[first * SECTOR : first * SECTOR + len(sectors)] = sectors
            self._allocate(index, bytes(bitmap), block)
            return
        self._pwrite(sectors, self._data_offset(entry) + first * SECTOR)
        bitmap = bytearray(self._bitmap(index, entry))
        set_bits(bitmap, first, last - first)
        self.flush()  # data before the bitmap bit that exposes it
        self._pwrite(bitmap, entry * SECTOR)
        self._bitmaps[index] = bitmap


def bit_run(bitmap: bytes | bytearray, first: int, count: int) -> tuple[bool, int]:
    """Value of bit ``first`` (MSB-first order) and how many bits from there share it."""
    width = count - first
    value = int.from_bytes(bitmap[: -(-count // 8)], "big") >> ((-count) % 8)
    tail = value & ((1 << width) - 1)
    present = bool(tail >> (width - 1))
    other = (~tail & ((1 << width) - 1)) if present else tail
    return present, width - other.bit_length() if other else width


def set_bits(bitmap: bytearray, first: int, count: int) -> None:
    """Set ``count`` bits from bit ``first`` (MSB-first), whole bytes at a time where possible."""
    end = first + count
    while first < end:
        if first % 8 == 0 and end - first >= 8:
            nbytes = (end - first) // 8
            bitmap[first // 8 : first // 8 + nbytes] = b"\xff" * nbytes
            first += nbytes * 8
        else:
            bitmap[first >> 3] |= 0x80 >> (first & 7)
            first += 1
