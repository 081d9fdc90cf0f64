"""Block manifests: an image's per-page digests, so a later diff needs no parent bytes.

JSON form (``BlockManifest.to_json()``)::

    {"format": "cloudservice-vhd-manifest", "version": 2, "hash": "sha256-128",
     "page_size": 4096, "virtual_size": 4294967296, "block_size": 2097152,
     "unique_id": "6f1c...", "timestamp": 848950230, "name": "base.vhd",
     "blocks": {"0": "<base64>", "17": "<base64>", ...}}

Two levels: a block (2 MiB) that reads as zeros is not listed, which keeps a sparse 2 TB
image's manifest small; a listed block carries the digest of each of its 4 KiB pages (16
bytes each, 8 KiB per block, base64), zero-padded past the end of the disk.  A block is
unchanged when its page digests are; inside a changed block, the differing digests name the
pages to ship, so a layer carries changed pages, not changed blocks.  The digest is SHA-256
cut to 128 bits (not a fast checksum): the manifest decides what is "unchanged", and a
crafted page must not be able to pass for a parent's page (second preimages of a 128-bit
cut cost 2^128).  Dense data costs 8 KiB of manifest per 2 MiB (0.4%).
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import json
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..files import sha256_of_file, write_atomically
from ._image import ExtentKind, Image, is_zero
from ._walk import data_blocks, read_block
from .errors import ImageIOError, ManifestError

MANIFEST_FORMAT = "cloudservice-vhd-manifest"
MANIFEST_VERSION = 2
CHANGES_FORMAT = "cloudservice-vhd-manifest-changes"
PAGE = 4096
PAGE_DIGEST = 16  # bytes of SHA-256 kept per page
ZERO_PAGE = hashlib.sha256(bytes(PAGE)).digest()[:PAGE_DIGEST]
_HASH_THREADS = 2  # the hashing runs beside the reading (hashlib drops the GIL)
_FILE_CHUNK = 1 << 20
_BlockReader = Callable[[int, memoryview], int]  # fills a block buffer, returns bytes read


@dataclass(frozen=True)
class BlockManifest:
    """Page digests of one image; ``pages`` maps block index -> its pages' digests."""

    virtual_size: int
    block_size: int
    unique_id: str | None
    timestamp: int | None = None
    name: str | None = None
    pages: dict[int, bytes] = field(default_factory=dict)

    @property
    def block_count(self) -> int:
        return -(-self.virtual_size // self.block_size)

    @property
    def pages_per_block(self) -> int:
        return self.block_size // PAGE

    def page_digests(self, index: int) -> bytes:
        """Block ``index``'s page digests (a zero block's when it is not listed)."""
        return self.pages.get(index) or ZERO_PAGE * self.pages_per_block

    def changed_pages(self, new: BlockManifest, index: int) -> list[int]:
        """Pages of block ``index`` (within the block) where ``new`` differs from this one."""
        return differing_pages(self.page_digests(index), new.page_digests(index))

    def changed_blocks(self, new: BlockManifest) -> Iterator[tuple[int, list[int]]]:
        """(block index, changed pages) of every block that differs in ``new``, ascending."""
        if (new.virtual_size, new.block_size) != (self.virtual_size, self.block_size):
            raise ManifestError(
                f"manifests of {self.name or 'an image'} and {new.name or 'an image'} differ in"
                " virtual size or block size: a layer needs its parent's geometry"
            )
        for index in sorted(self.pages.keys() | new.pages.keys()):
            if pages := self.changed_pages(new, index):
                yield index, pages

    def changes_since(self, parent: BlockManifest) -> ManifestChanges:
        """This manifest as the changes from ``parent``'s (see :class:`ManifestChanges`)."""
        pages: dict[int, dict[int, bytes]] = {}
        for index, changed in parent.changed_blocks(self):
            now = self.page_digests(index)
            pages[index] = {p: now[p * PAGE_DIGEST : (p + 1) * PAGE_DIGEST] for p in changed}
        return ManifestChanges(
            self.virtual_size, self.block_size, self.unique_id, self.timestamp, self.name, pages
        )

    def updated(self, changes: ManifestChanges) -> BlockManifest:
        """The manifest of the image ``changes`` describe, this one being its parent's."""
        if (changes.virtual_size, changes.block_size) != (self.virtual_size, self.block_size):
            raise ManifestError("manifest changes of another geometry than their parent's")
        pages = dict(self.pages)
        for index, changed in changes.pages.items():
            digests = bytearray(self.page_digests(index))
            for page, digest in changed.items():
                digests[page * PAGE_DIGEST : (page + 1) * PAGE_DIGEST] = digest
            if bytes(digests) == ZERO_PAGE * self.pages_per_block:
                pages.pop(index, None)  # reads as zeros now: not listed
            else:
                pages[index] = bytes(digests)
        return BlockManifest(
            self.virtual_size,
            self.block_size,
            changes.unique_id,
            changes.timestamp,
            changes.name,
            pages,
        )

    def is_zero_page(self, index: int, page: int) -> bool:
        at = page * PAGE_DIGEST
        return self.page_digests(index)[at : at + PAGE_DIGEST] == ZERO_PAGE

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "hash": "sha256-128",
            "page_size": PAGE,
            "virtual_size": self.virtual_size,
            "block_size": self.block_size,
            "unique_id": self.unique_id,
            "timestamp": self.timestamp,
            "name": self.name,
            "blocks": {
                str(i): base64.b64encode(d).decode("ascii") for i, d in sorted(self.pages.items())
            },
        }

    @classmethod
    def from_json(cls, doc: Any) -> BlockManifest:
        """Validate and load; raises ManifestError naming the bad key."""
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"not a block manifest: 'format' must be {MANIFEST_FORMAT!r}")
        if (doc.get("version"), doc.get("hash"), doc.get("page_size")) != (
            MANIFEST_VERSION,
            "sha256-128",
            PAGE,
        ):
            raise ManifestError(
                f"unsupported manifest version {doc.get('version')!r} / hash {doc.get('hash')!r}"
                f"; this engine reads version {MANIFEST_VERSION} (sha256-128 per {PAGE}-byte"
                " page): make it again with `cloudservice vhd manifest`"
            )
        size, bs = doc.get("virtual_size"), doc.get("block_size")
        if (
            not isinstance(size, int)
            or size <= 0
            or not isinstance(bs, int)
            or bs < PAGE
            or bs & (bs - 1)
        ):
            raise ManifestError(
                f"manifest virtual_size {size!r} / block_size {bs!r} must be positive integers,"
                f" the block size a power of two of at least {PAGE}"
            )
        uid = doc.get("unique_id")
        if uid is not None:
            try:
                uid = str(uuid.UUID(str(uid)))
            except ValueError:
                raise ManifestError(f"manifest unique_id {uid!r} is not a UUID") from None
        return cls(
            size,
            bs,
            uid,
            _opt_int(doc, "timestamp"),
            doc.get("name"),
            _page_digests(doc.get("blocks"), -(-size // bs), bs // PAGE * PAGE_DIGEST),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON form to ``path`` atomically (the old file or the new, never half)."""
        text = json.dumps(self.to_json(), separators=(",", ":"))
        try:
            write_atomically(path, text.encode("utf-8"))
        except OSError as exc:
            raise ImageIOError(
                exc.errno, f"cannot write manifest: {exc.strerror}", os.fspath(path)
            ) from exc

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BlockManifest:
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{os.fspath(path)}: cannot read manifest: {exc}") from exc
        return cls.from_json(doc)


@dataclass(frozen=True)
class ManifestChanges:
    """How one image's manifest differs from its parent's: the digests of the pages that
    changed, and the new image's identity. What a layer's record carries (its size follows
    the change, not the image), applied to the parent's manifest with ``parent.updated()``.

    JSON: ``{"format": "cloudservice-vhd-manifest-changes", "version": 1, "virtual_size",
    "block_size", "unique_id", "timestamp", "name", "pages": {"17": "<base64>"}}``, where
    each base64 string holds (page index: 2 bytes big-endian, digest: 16 bytes) entries.
    """

    virtual_size: int
    block_size: int
    unique_id: str | None
    timestamp: int | None
    name: str | None
    pages: dict[int, dict[int, bytes]]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CHANGES_FORMAT,
            "version": 1,
            "virtual_size": self.virtual_size,
            "block_size": self.block_size,
            "unique_id": self.unique_id,
            "timestamp": self.timestamp,
            "name": self.name,
            "pages": {
                str(index): base64.b64encode(
                    b"".join(page.to_bytes(2, "big") + d for page, d in sorted(pages.items()))
                ).decode("ascii")
                for index, pages in sorted(self.pages.items())
            },
        }

    @classmethod
    def from_json(cls, doc: Any) -> ManifestChanges:
        if not isinstance(doc, dict) or (doc.get("format"), doc.get("version")) != (
            CHANGES_FORMAT,
            1,
        ):
            raise ManifestError(f"not a manifest change set: 'format' must be {CHANGES_FORMAT!r}")
        base = BlockManifest.from_json(
            {
                **doc,
                "format": MANIFEST_FORMAT,
                "version": MANIFEST_VERSION,
                "hash": "sha256-128",
                "page_size": PAGE,
                "blocks": {},
            }
        )
        entries = _page_digests(doc.get("pages"), base.block_count, None)
        pages: dict[int, dict[int, bytes]] = {}
        for index, packed in entries.items():
            if len(packed) % (2 + PAGE_DIGEST):
                raise ManifestError(f"manifest changes of block {index}: truncated entries")
            step = 2 + PAGE_DIGEST
            block = {
                int.from_bytes(packed[at : at + 2], "big"): packed[at + 2 : at + step]
                for at in range(0, len(packed), step)
            }
            if any(page >= base.pages_per_block for page in block):
                raise ManifestError(f"manifest changes of block {index}: page past the block")
            pages[index] = block
        return cls(
            base.virtual_size, base.block_size, base.unique_id, base.timestamp, base.name, pages
        )


def make_manifest(image: Image, *, block_size: int | None = None) -> BlockManifest:
    """Digest every page of every block of ``image`` (through its chain) not known to be zero.

    ``block_size`` defaults to the image's own (2 MiB for raw/fixed/qcow2).
    """
    bs = _block_size(image, block_size)
    blocks = hashed_blocks(image, bs, data_blocks(image, bs))
    return _manifest(image, bs, {i: d for i, _n, _buf, d in blocks if d is not None})


def scan_image(image: Image, *, block_size: int | None = None) -> tuple[BlockManifest, str]:
    """The image's manifest and the SHA-256 of its file, reading the file once.

    A whole image whose blocks each lie in one run of its file (fixed and dynamic VHDs as
    written by qemu, Hyper-V and this engine, raw files) is read front to back: the file's
    bytes feed its digest, the blocks among them their page digests. Any other layout (a
    differencing VHD, a block split by its sector bitmap) is read twice, once for each.
    """
    bs = _block_size(image, block_size)
    layout = _file_layout(image, bs)
    if layout is None:
        return make_manifest(image, block_size=bs), _file_sha256(image.path)
    digest = hashlib.sha256()
    fd = os.open(image.path, os.O_RDONLY)
    try:
        blocks = hashed_blocks(
            image, bs, (i for _at, i, _n in layout), _FileOrder(fd, layout, digest)
        )
        pages = {i: d for i, _n, _buf, d in blocks if d is not None}
        _hash_file_range(fd, _end_of(layout), os.fstat(fd).st_size, digest)
    except OSError as exc:
        raise ImageIOError(exc.errno, f"read failed: {exc.strerror}", image.path) from exc
    finally:
        os.close(fd)
    return _manifest(image, bs, pages), digest.hexdigest()


def scan_child(image: Image, parent: BlockManifest) -> BlockManifest:
    """The manifest of a differencing image, from its parent's manifest and the pages the
    child stores (read through the chain where a page is partly the parent's). Only those
    are read: an update shipped as a differencing disk costs what it changes, not the size
    of the disk.
    """
    if image.parent is None or image.virtual_size != parent.virtual_size:
        raise ManifestError(
            f"{image.path}: scan_child needs a differencing image of the manifest's size"
        )
    bs = parent.block_size
    pages = dict(parent.pages)
    buf = bytearray(bs)
    view = memoryview(buf)
    for index, stored in _stored_pages(image, bs):
        n = min(bs, image.virtual_size - index * bs)
        for first, count in page_runs(stored):
            start, end = first * PAGE, min((first + count) * PAGE, n)
            image.readinto(index * bs + start, view[start:end])
            view[end : (first + count) * PAGE] = bytes((first + count) * PAGE - end)
        digests = bytearray(parent.page_digests(index))
        for page in stored:
            digest = hashlib.sha256(view[page * PAGE : (page + 1) * PAGE]).digest()
            digests[page * PAGE_DIGEST : (page + 1) * PAGE_DIGEST] = digest[:PAGE_DIGEST]
        if bytes(digests) == ZERO_PAGE * parent.pages_per_block:
            pages.pop(index, None)
        else:
            pages[index] = bytes(digests)
    return _manifest(image, parent.block_size, pages)


def differing_pages(old: bytes, now: bytes) -> list[int]:
    """Pages whose digests differ between two blocks' page digests."""
    if old == now:
        return []
    return [
        page
        for page, at in enumerate(range(0, len(now), PAGE_DIGEST))
        if old[at : at + PAGE_DIGEST] != now[at : at + PAGE_DIGEST]
    ]


def page_runs(pages: list[int]) -> Iterator[tuple[int, int]]:
    """(first page, count) of each run of consecutive pages, of ascending ``pages``."""
    first = count = 0
    for page in pages:
        if count and page == first + count:
            count += 1
            continue
        if count:
            yield first, count
        first, count = page, 1
    if count:
        yield first, count


def _stored_pages(image: Image, bs: int) -> Iterator[tuple[int, list[int]]]:
    """(block index, pages within it) where ``image`` itself (not its parent) has data."""
    touched: dict[int, set[int]] = {}
    offset = 0
    while offset < image.virtual_size:
        extent = image.block_status(offset)
        if extent.kind is not ExtentKind.BACKING:
            for page in range(offset // PAGE, -(-(offset + extent.length) // PAGE)):
                touched.setdefault(page * PAGE // bs, set()).add(page % (bs // PAGE))
        offset += extent.length
    for index in sorted(touched):
        yield index, sorted(touched[index])


def hashed_blocks(
    image: Image,
    block_size: int,
    indices: Iterable[int],
    reader: _BlockReader | None = None,
) -> Iterator[tuple[int, int, bytearray, bytes | None]]:
    """(index, bytes read, block buffer, page digests or None if all zero) for each index.

    Pipelined: this thread reads the next blocks while worker threads digest earlier ones
    (hashlib drops the GIL), so throughput is max(read, hash / threads) instead of their sum.
    The yielded buffer is valid until the next iteration.
    """
    read = reader or (lambda index, view: read_block(image, index, block_size, view))
    depth = _HASH_THREADS + 2
    bufs = [bytearray(block_size) for _ in range(depth)]
    pending: deque[tuple[int, int, bytearray, Future[bytes | None]]] = deque()
    with ThreadPoolExecutor(max_workers=_HASH_THREADS) as pool:
        for turn, index in enumerate(indices):
            while len(pending) >= depth - 1:
                yield _ready(pending.popleft())
            buf = bufs[turn % depth]
            got = read(index, memoryview(buf))
            pending.append((index, got, buf, pool.submit(page_digests, buf, got)))
        while pending:
            yield _ready(pending.popleft())


def page_digests(block: bytearray, got: int) -> bytes | None:
    """The digests of a block's pages, or None when it reads as zeros."""
    if got == 0 or is_zero(block, 0, len(block)):
        return None
    view, sha = memoryview(block), hashlib.sha256
    return b"".join(
        [sha(view[at : at + PAGE]).digest()[:PAGE_DIGEST] for at in range(0, len(block), PAGE)]
    )


# -- reading a whole image in file order ------------------------------------------------------


class _FileOrder:
    """Reads blocks in file order for :func:`hashed_blocks`, hashing every byte of the file
    (the gaps between blocks, metadata included) into ``digest`` on the way."""

    def __init__(self, fd: int, layout: list[tuple[int, int, int]], digest: Any) -> None:
        self.fd, self.digest, self.pos = fd, digest, 0
        self.where = {index: (at, n) for at, index, n in layout}

    def __call__(self, index: int, view: memoryview) -> int:
        at, n = self.where[index]
        _hash_file_range(self.fd, self.pos, at, self.digest)
        got = os.preadv(self.fd, [view[:n]], at)
        if got != n:
            raise OSError(errno.EIO, "the image file ended early")
        view[n:] = bytes(len(view) - n)
        self.digest.update(view[:n])
        self.pos = at + n
        return n


def _file_layout(image: Image, bs: int) -> list[tuple[int, int, int]] | None:
    """(file offset, block index, bytes) of each data block in file order, when every block
    reads as one run of the image's own file; None otherwise."""
    if image.parent is not None:
        return None
    layout = []
    for index in data_blocks(image, bs):
        start = index * bs
        n = min(bs, image.virtual_size - start)
        extent = image.block_status(start)
        if extent.kind is not ExtentKind.DATA or extent.length < n or extent.file_offset is None:
            return None
        layout.append((extent.file_offset, index, n))
    layout.sort()
    ends = [at + n for at, _i, n in layout]
    if any(end > at for end, (at, _i, _n) in zip(ends, layout[1:], strict=False)):
        return None  # blocks sharing file bytes: not a layout this reader follows
    return layout


def _end_of(layout: list[tuple[int, int, int]]) -> int:
    return layout[-1][0] + layout[-1][2] if layout else 0


def _hash_file_range(fd: int, start: int, end: int, digest: Any) -> None:
    while start < end:
        chunk = os.pread(fd, min(_FILE_CHUNK, end - start), start)
        if not chunk:
            raise OSError(errno.EIO, "the image file ended early")
        digest.update(chunk)
        start += len(chunk)


def _file_sha256(path: str) -> str:
    try:
        return sha256_of_file(path)
    except OSError as exc:
        raise ImageIOError(exc.errno, f"read failed: {exc.strerror}", path) from exc


# -- helpers ----------------------------------------------------------------------------------


def _ready(
    item: tuple[int, int, bytearray, Future[bytes | None]],
) -> tuple[int, int, bytearray, bytes | None]:
    return item[0], item[1], item[2], item[3].result()


def _block_size(image: Image, block_size: int | None) -> int:
    bs = block_size or getattr(image, "block_size", None) or 2 * 1024 * 1024
    if bs < PAGE or bs & (bs - 1):
        raise ManifestError(f"block size {bs} must be a power of two of at least {PAGE}")
    return bs


def _manifest(image: Image, bs: int, pages: dict[int, bytes]) -> BlockManifest:
    footer = getattr(image, "footer", None)
    return BlockManifest(
        virtual_size=image.virtual_size,
        block_size=bs,
        unique_id=str(uuid.UUID(bytes=footer.unique_id)) if footer else None,
        timestamp=footer.timestamp if footer else None,
        name=os.path.basename(image.path),
        pages=pages,
    )


def _page_digests(blocks: Any, count: int, length: int | None) -> dict[int, bytes]:
    """Block index -> decoded base64, each ``length`` bytes long (None: any length)."""
    if not isinstance(blocks, dict):
        raise ManifestError("manifest 'blocks' must be an object of index -> base64 digests")
    out = {}
    for key, value in blocks.items():
        if not (isinstance(key, str) and key.isdigit() and int(key) < count):
            raise ManifestError(f"manifest block index {key!r} is not in 0..{count - 1}")
        try:
            digests = base64.b64decode(value, validate=True) if isinstance(value, str) else None
        except binascii.Error:
            digests = None
        if digests is None or (length is not None and len(digests) != length):
            size = "" if length is None else f" {length} bytes"
            raise ManifestError(f"manifest block {key}: its page digests must be{size} in base64")
        out[int(key)] = digests
    return out


def _opt_int(doc: dict[str, Any], key: str) -> int | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, int):
        raise ManifestError(f"manifest {key!r} must be an integer, not {value!r}")
    return value
