"""Diffs: parent + new image -> differencing VHD (or qcow2 overlay) holding only changes.

Which blocks to look at comes only from walking ``block_status`` of both sides: a block that
reads as zeros by allocation in both is never read.  Local diffs compare bytes directly
(memcmp, faster than any hash); manifest diffs digest the new image's 4 KiB pages and compare
them with the manifest's (or, when both manifests are known, compare digests and read only
the changed pages).  The unit of change is the 4 KiB page everywhere:

* a differencing VHD child marks only the pages that differ (one bitmap byte per page: runs
  stay 4 KiB aligned, which also keeps libvhdi's bitmap bug out of play) but stores the
  whole block's new data, so even a reader that ignores bitmaps reads the right bytes;
* a qcow2 overlay stores only the changed pages, as subclusters of extended L2 entries;
  the rest of each cluster is a hole in the file, which a sparse upload never sends.

Memory: a few block buffers plus the BAT, whatever the disk size.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Protocol, TypeVar

from ..files import data_bytes
from ._differencing import DifferencingImage
from ._format import DEFAULT_BLOCK_SIZE, vhd_timestamp
from ._image import Image, advise_sequential, is_zero
from ._manifest import (
    PAGE,
    PAGE_DIGEST,
    ZERO_PAGE,
    BlockManifest,
    differing_pages,
    hashed_blocks,
    page_runs,
    scan_child,
)
from ._open import chain_of
from ._qcow2_writer import Qcow2OverlayWriter
from ._walk import data_blocks, merged_data_blocks, read_block
from ._writer import ParentRef, VhdWriter
from .errors import ChainError, ImageFormatError, ImageUsageError

_CHUNK = 64 * 1024
_THREADS = 2  # readers of a local diff: more than two only queue on this kind of machine
_T = TypeVar("_T")


@dataclass(frozen=True)
class DiffResult:
    """What a diff wrote.  ``upload_bytes``: what a sparse upload of it sends (a qcow2
    layer's holes travel as holes), else its ``file_size``."""

    output: str
    format: str
    virtual_size: int
    block_size: int
    blocks_total: int
    blocks_changed: int
    bytes_changed: int  # bytes in changed 4 KiB pages (manifest diffs: in changed blocks)
    bytes_read: int
    file_size: int
    upload_bytes: int
    parent_unique_id: str | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Sink(Protocol):
    def put(self, index: int, block: bytearray, n: int, pages: list[int] | None) -> None: ...


class _VhdSink:
    def __init__(self, writer: VhdWriter) -> None:
        self.writer = writer

    def put(self, index: int, block: bytearray, n: int, pages: list[int] | None) -> None:
        bitmap = None
        if pages is not None:  # a 4 KiB page is 8 sectors: exactly one bitmap byte
            bits = bytearray(len(self.writer.full_bitmap()))
            for page in pages:
                bits[page] = 0xFF
            bitmap = bytes(bits)
        self.writer.write_block(index, block, bitmap)


class _Qcow2Sink:
    """Changed pages into a qcow2 overlay: as subclusters with extended L2 entries (a page
    travels as a page), else as the whole clusters holding them."""

    def __init__(self, writer: Qcow2OverlayWriter, block_size: int) -> None:
        self.writer = writer
        self.block_size = block_size

    def put(self, index: int, block: bytearray, n: int, pages: list[int] | None) -> None:
        cs = self.writer.cluster_size
        if pages is None:
            pages = list(range(-(-n // PAGE)))
        by_cluster: dict[int, list[int]] = {}
        for page in pages:
            by_cluster.setdefault(page * PAGE // cs, []).append(page)
        base = index * (self.block_size // cs)
        for cluster, in_cluster in sorted(by_cluster.items()):
            off = cluster * cs
            data = memoryview(block)[off : min(off + cs, n)]
            if self.writer.extended_l2:
                self._subclusters(base + cluster, block, off, len(data), in_cluster)
            elif is_zero(block, off, off + len(data)):
                self.writer.add_zero_cluster(base + cluster)
            else:
                self.writer.add_cluster(base + cluster, data)

    def _subclusters(
        self, cluster: int, block: bytearray, off: int, length: int, pages: list[int]
    ) -> None:
        """Pages (of the block) inside the cluster at block offset ``off``: allocated
        subclusters for those with data, zero ones for those that now read as zeros."""
        sub = self.writer.cluster_size // 32
        allocated = zero = 0
        for page in pages:
            start, end = page * PAGE, min(page * PAGE + PAGE, off + length)
            mask = ((1 << -(-(end - start) // sub)) - 1) << ((start - off) // sub)
            if is_zero(block, start, end):
                zero |= mask
            else:
                allocated |= mask
        self.writer.add_subclusters(cluster, memoryview(block)[off : off + length], allocated, zero)


# -- public API ---------------------------------------------------------------------------


def diff_images(
    parent: Image, new: Image, out_path: str | os.PathLike[str], *, block_size: int | None = None
) -> DiffResult:
    """Write a differencing VHD ``out_path`` of ``parent`` (a VHD) such that parent+child == new."""
    _same_size(parent.virtual_size, new, "parent")
    bs = block_size or getattr(parent, "block_size", None) or DEFAULT_BLOCK_SIZE
    with VhdWriter(
        out_path,
        parent.virtual_size,
        block_size=bs,
        parent=ParentRef.of(parent, os.fspath(out_path)),
    ) as writer:
        changed, nbytes, nread = _diff_local(parent, new, bs, _VhdSink(writer))
        size = writer.commit()
    return _result(
        out_path, "vhd", parent.virtual_size, bs, changed, nbytes, nread, size, _uid_of(parent)
    )


def diff_against_manifest(
    manifest: BlockManifest,
    new: Image,
    out_path: str | os.PathLike[str],
    *,
    parent_unique_id: str | None = None,
    parent_path: str | None = None,
    parent_timestamp: int | None = None,
) -> DiffResult:
    """Like :func:`diff_images`, with the parent known only by its manifest.

    ``parent_unique_id`` defaults to the manifest's; ``parent_path`` (recorded in the child's
    locators and name, relative to where the child will live) defaults to the manifest name.
    """
    uid = parent_unique_id or manifest.unique_id
    name = parent_path or manifest.name
    if uid is None or not name:
        raise ImageUsageError(
            f"manifest of {manifest.name or 'an image'}: it records no VHD unique id or name"
            " (it was made from a raw or qcow2 image), and a differencing VHD must name its"
            " parent's; make the manifest from the parent VHD (cloudservice vhd manifest)"
        )
    _same_size(manifest.virtual_size, new, "manifest")
    ref = ParentRef(
        uuid.UUID(uid).bytes,
        manifest.virtual_size,
        parent_timestamp if parent_timestamp is not None else manifest.timestamp or vhd_timestamp(),
        name,
    )
    with VhdWriter(
        out_path, manifest.virtual_size, block_size=manifest.block_size, parent=ref
    ) as writer:
        changed, nbytes, nread = _diff_manifest(manifest, new, _VhdSink(writer))
        size = writer.commit()
    return _result(
        out_path,
        "vhd",
        manifest.virtual_size,
        manifest.block_size,
        changed,
        nbytes,
        nread,
        size,
        uid,
    )


def qcow2_overlay_of(
    parent: Image,
    new: Image,
    out_path: str | os.PathLike[str],
    *,
    backing_file: str | None = None,
    backing_format: str = "vpc",
) -> DiffResult:
    """A qcow2 overlay over ``parent`` that reads as ``new``, of the 4 KiB pages that differ
    (compared byte for byte); ``backing_file`` defaults to the parent relative to the output."""
    _same_size(parent.virtual_size, new, "parent")
    bs = getattr(parent, "block_size", None) or DEFAULT_BLOCK_SIZE
    if backing_file is None:
        backing_file = os.path.relpath(
            os.path.abspath(parent.path), os.path.dirname(os.path.abspath(out_path))
        )
    return _qcow2_layer(
        out_path,
        (parent.virtual_size, bs, _uid_of(parent)),
        (backing_file, backing_format),
        lambda sink: _diff_local(parent, new, bs, sink),
    )


def write_qcow2_overlay(
    child: Image,
    out_path: str | os.PathLike[str],
    *,
    backing_file: str | None = None,
    backing_format: str = "vpc",
) -> DiffResult:
    """Export differencing VHD ``child`` (opened with its parent) as a qcow2 overlay.

    The overlay holds the clusters the child stores (read through the chain) and points at
    ``backing_file`` (default: the parent's path relative to the overlay) in
    ``backing_format``.  qemu misreads differencing VHDs, so when the parent is itself
    differencing, export it to qcow2 first and pass that as ``backing_file``.
    """
    if not isinstance(child, DifferencingImage) or child.parent is None:
        raise ImageUsageError(
            f"{child.path}: to-qcow2 needs a differencing VHD opened with its parent"
        )
    parent = child.parent
    if backing_file is None:
        if isinstance(parent, DifferencingImage):
            raise ChainError(
                f"{child.path}: parent {parent.path} is itself a differencing VHD, which qemu"
                " cannot read; export it to qcow2 first and pass it as the backing file"
            )
        backing_file = os.path.relpath(
            os.path.abspath(parent.path), os.path.dirname(os.path.abspath(out_path))
        )
    bs = child.block_size
    buf = bytearray(bs)
    changed = nbytes = nread = 0
    with _qcow2(out_path, child.virtual_size, backing_file, backing_format, bs) as writer:
        sink = _Qcow2Sink(writer, bs)
        for index in child.allocated_blocks():
            bitmap = child.sector_bitmap(index) or b""
            pages = [i for i, byte in enumerate(bitmap[: -(-bs // PAGE)]) if byte]
            if not pages:
                continue
            n = read_block(child, index, bs, memoryview(buf))
            sink.put(index, buf, n, pages)
            changed, nbytes, nread = changed + 1, nbytes + len(pages) * PAGE, nread + n
        size = writer.commit()
    return _result(
        out_path,
        "qcow2",
        child.virtual_size,
        bs,
        changed,
        nbytes,
        nread,
        size,
        str(uuid.UUID(bytes=child.parent_unique_id)),
    )


def qcow2_overlay_from_manifest(
    manifest: BlockManifest,
    new: Image,
    out_path: str | os.PathLike[str],
    *,
    backing_file: str,
    backing_format: str = "vpc",
) -> DiffResult:
    """A qcow2 overlay over ``backing_file`` (the manifest's image) that reads as ``new``."""
    _same_size(manifest.virtual_size, new, "manifest")
    return _qcow2_layer(
        out_path,
        (manifest.virtual_size, manifest.block_size, manifest.unique_id),
        (backing_file, backing_format),
        lambda sink: _diff_manifest(manifest, new, sink),
    )


def layer_from_manifests(
    parent: BlockManifest,
    target: BlockManifest,
    new: Image,
    out_path: str | os.PathLike[str],
    *,
    backing_file: str,
    backing_format: str = "vpc",
) -> DiffResult:
    """A qcow2 overlay over ``backing_file`` (``parent``'s image) that reads as ``new``, whose
    manifest ``target`` is already known: only the changed pages of ``new`` are read."""
    _same_size(parent.virtual_size, new, "manifest")
    return _qcow2_layer(
        out_path,
        (parent.virtual_size, parent.block_size, parent.unique_id),
        (backing_file, backing_format),
        lambda sink: _diff_manifests(parent, target, new, sink),
    )


# -- the diff loops ---------------------------------------------------------------------


def _diff_local(parent: Image, new: Image, bs: int, sink: _Sink) -> tuple[int, int, int]:
    """Compare block by block with plain preads and memcmp, on two threads.

    Reading (a copy out of the page cache, or the disk) is the cost and drops the GIL, so two
    threads each read and compare their own blocks; the sink takes changed blocks in order.
    """
    size = parent.virtual_size
    changed = nbytes = nread = 0
    for image in (*chain_of(parent), *chain_of(new)):
        advise_sequential(image)
    local = threading.local()

    def compare(index: int) -> tuple[int, int, bytearray | None, list[int]]:
        if not hasattr(local, "bufs"):
            local.bufs = (bytearray(bs), bytearray(bs))
        pbuf, nbuf = local.bufs
        got = read_block(parent, index, bs, memoryview(pbuf))
        got += read_block(new, index, bs, memoryview(nbuf))
        if pbuf == nbuf:
            return index, got, None, []
        pages = changed_pages(pbuf, nbuf, min(bs, size - index * bs))
        return index, got, bytearray(nbuf), pages  # a copy: the buffer is the thread's

    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        blocks = merged_data_blocks([parent, new], bs, size)
        for index, got, block, pages in _in_order(pool, compare, blocks):
            nread += got
            if block is None:
                continue
            n = min(bs, size - index * bs)
            sink.put(index, block, n, pages)
            changed, nbytes = changed + 1, nbytes + _page_bytes(pages, n)
    return changed, nbytes, nread


def _in_order(
    pool: ThreadPoolExecutor, work: Callable[[int], _T], items: Iterable[int], ahead: int = 8
) -> Iterator[_T]:
    """``work(item)`` for each item on the pool, results in the items' order, at most
    ``ahead`` in flight (memory stays bounded whatever the disk's size)."""
    pending: deque[Future[_T]] = deque()
    for item in items:
        if len(pending) >= ahead:
            yield pending.popleft().result()
        pending.append(pool.submit(work, item))
    while pending:
        yield pending.popleft().result()


def _diff_manifest(manifest: BlockManifest, new: Image, sink: _Sink) -> tuple[int, int, int]:
    """Digest the new image's pages (one pass) and put the pages whose digests differ; a
    differencing image of the manifest's image: only the pages it stores are read."""
    if _child_of(new, manifest):
        target = scan_child(new, manifest)
        return _diff_manifests(manifest, target, new, sink)
    bs = manifest.block_size
    changed = nbytes = nread = 0
    indices = _unique(heapq.merge(sorted(manifest.pages), data_blocks(new, bs)))
    for index, got, buf, digests in hashed_blocks(new, bs, indices):
        nread += got
        now = digests or ZERO_PAGE * manifest.pages_per_block
        if now == manifest.page_digests(index):
            continue
        n = min(bs, new.virtual_size - index * bs)
        pages = differing_pages(manifest.page_digests(index), now)
        sink.put(index, buf, n, pages)
        changed, nbytes = changed + 1, nbytes + _page_bytes(pages, n)
    return changed, nbytes, nread


def _diff_manifests(
    parent: BlockManifest, target: BlockManifest, new: Image, sink: _Sink
) -> tuple[int, int, int]:
    """Put the pages where ``target`` (the manifest of ``new``) differs from ``parent``,
    reading only those pages of ``new``, each checked against its digest."""
    bs = parent.block_size
    buf, zeros = bytearray(bs), bytes(bs)  # the sinks read only the changed pages of `buf`
    view = memoryview(buf)
    changed = nbytes = nread = 0
    for index, pages in parent.changed_blocks(target):
        n = min(bs, new.virtual_size - index * bs)
        runs = [(first * PAGE, min((first + count) * PAGE, n)) for first, count in page_runs(pages)]
        for start, end in runs:
            new.readinto(index * bs + start, view[start:end])
            nread += end - start
        _check_pages(buf, n, pages, target, index, new.path)
        sink.put(index, buf, n, pages)
        for start, end in runs:  # zeros again for the next block's pages
            view[start:end] = zeros[: end - start]
        changed, nbytes = changed + 1, nbytes + _page_bytes(pages, n)
    return changed, nbytes, nread


def _child_of(image: Image, manifest: BlockManifest) -> bool:
    """Whether ``image`` is a differencing image whose parent is the manifest's image."""
    if not isinstance(image, DifferencingImage) or manifest.unique_id is None:
        return False
    return str(uuid.UUID(bytes=image.parent_unique_id)) == manifest.unique_id


def _check_pages(
    buf: bytearray, n: int, pages: list[int], target: BlockManifest, index: int, path: str
) -> None:
    """The pages read are the pages the manifest was made from: a file changed since its
    manifest was made must not be shipped under the manifest's name."""
    expected = target.page_digests(index)
    view = memoryview(buf)
    for page in pages:
        at = page * PAGE_DIGEST
        digest = hashlib.sha256(view[page * PAGE : page * PAGE + PAGE]).digest()[:PAGE_DIGEST]
        if digest != expected[at : at + PAGE_DIGEST]:
            raise ImageUsageError(
                f"{path} changed after it was scanned (block {index}, page {page} no longer"
                " matches its digest): run again so the image is scanned afresh"
            )


def _page_bytes(pages: list[int], n: int) -> int:
    return sum(min(PAGE, n - page * PAGE) for page in pages)  # the last page may be short


def changed_pages(a: bytearray, b: bytearray, n: int) -> list[int]:
    """Indices of the 4 KiB pages in the first ``n`` bytes where ``a`` and ``b`` differ.

    64 KiB chunks first, then pages inside the differing chunks: few Python steps per block.
    """
    pages = []
    for chunk in range(0, n, _CHUNK):
        end = min(chunk + _CHUNK, n)
        if a[chunk:end] == b[chunk:end]:
            continue
        for page in range(chunk, end, PAGE):
            if a[page : min(page + PAGE, end)] != b[page : min(page + PAGE, end)]:
                pages.append(page // PAGE)
    return pages


def _unique(items: Iterator[int]) -> Iterator[int]:
    last = -1
    for item in items:
        if item != last:
            yield item
            last = item


def _same_size(size: int, new: Image, what: str) -> None:
    if new.virtual_size != size:
        raise ImageFormatError(
            f"{new.path}: virtual size {new.virtual_size} differs from the {what}'s {size};"
            " a differencing disk must have its parent's size (resize the new image first)",
            field="virtual size",
            value=new.virtual_size,
        )


def _qcow2_layer(
    out_path: str | os.PathLike[str],
    geometry: tuple[int, int, str | None],
    backing: tuple[str, str],
    diff: Callable[[_Sink], tuple[int, int, int]],
) -> DiffResult:
    """Run ``diff`` into a qcow2 layer: geometry is (virtual size, block size, the parent's
    unique id), backing (file, format)."""
    size, bs, parent_uid = geometry
    with _qcow2(out_path, size, *backing, bs) as writer:
        changed, nbytes, nread = diff(_Qcow2Sink(writer, bs))
        file_size = writer.commit()
    return _result(out_path, "qcow2", size, bs, changed, nbytes, nread, file_size, parent_uid)


def _qcow2(
    path: str | os.PathLike[str], size: int, backing: str, fmt: str, block_size: int
) -> Qcow2OverlayWriter:
    cluster = min(64 * 1024, block_size)
    return Qcow2OverlayWriter(
        path,
        size,
        backing_file=backing,
        backing_format=fmt,
        cluster_bits=cluster.bit_length() - 1,
        # 32 subclusters of 2 KiB: a changed 4 KiB page is stored as 4 KiB, not 64
        extended_l2=cluster >= 32 * 512,
    )


def _uid_of(image: Image) -> str | None:
    footer = getattr(image, "footer", None)
    return str(uuid.UUID(bytes=footer.unique_id)) if footer else None


def _result(
    out: str | os.PathLike[str],
    fmt: str,
    size: int,
    bs: int,
    changed: int,
    nbytes: int,
    nread: int,
    file_size: int,
    parent_uid: str | None,
) -> DiffResult:
    upload = data_bytes(out) if fmt == "qcow2" else file_size
    return DiffResult(
        os.fspath(out),
        fmt,
        size,
        bs,
        -(-size // bs),
        changed,
        nbytes,
        nread,
        file_size,
        upload,
        parent_uid,
    )
