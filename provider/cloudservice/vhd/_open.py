"""Opening images: format probing, VHD footer/header checks, differencing chains.

A differencing child names its parent three ways: the parent's unique id (authoritative),
parent locators (relative/absolute paths) and the parent's file name.  Paths only *find*
candidates; the unique id decides.  Chains are followed to at most ``MAX_CHAIN_DEPTH``
levels and a file met twice is a loop.
"""

from __future__ import annotations

import os
import uuid
from pathlib import PureWindowsPath

from ._differencing import DifferencingImage
from ._dynamic import DynamicImage, load_metadata
from ._fixed import FixedImage
from ._format import DISK_FIXED, FOOTER_COOKIE, FOOTER_SIZE, parse_footer
from ._image import Image, ImageInfo, pread_exact
from ._qcow2 import QCOW2_MAGIC, open_qcow2
from ._raw import RawImage
from .errors import (
    ChainLoopError,
    ImageFormatError,
    ImageIOError,
    ImageUsageError,
    ParentMismatchError,
    ParentNotFoundError,
    TruncatedImageError,
)

MAX_CHAIN_DEPTH = 32
FORMATS = ("vhd", "raw", "qcow2")
VhdImage = FixedImage | DynamicImage | DifferencingImage


def detect_format(path: str) -> str:
    """'vhd' (a conectix cookie at the start or end), 'qcow2' (its magic) or 'raw'."""
    fd = _os_open(path, False)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 8, 0)
        tail = os.pread(fd, 8, size - FOOTER_SIZE) if size >= FOOTER_SIZE else b""
    finally:
        os.close(fd)
    if FOOTER_COOKIE in (head, tail):
        return "vhd"
    return "qcow2" if head.startswith(QCOW2_MAGIC) else "raw"


def open_image(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    writable: bool = False,
    strict: bool = True,
    parent: str | os.PathLike[str] | Image | None = None,
    resolve_parent: bool = True,
) -> Image:
    """Open a disk image; see the package docstring.  ``format`` is vhd, raw, qcow2 or None."""
    spath = os.fspath(path)
    fmt = format or detect_format(spath)
    if fmt == "vhd":
        return open_vhd(
            spath, writable=writable, strict=strict, parent=parent, resolve_parent=resolve_parent
        )
    if fmt == "raw":
        fd = _os_open(spath, writable)
        return RawImage(spath, fd, writable, os.fstat(fd).st_size)
    if fmt == "qcow2":
        if writable:
            raise ImageUsageError("qcow2 images are read-only here; write a VHD instead")
        return open_qcow2(spath)
    raise ImageUsageError(f"unknown image format {fmt!r}; use one of {', '.join(FORMATS)}")


def open_vhd(
    path: str | os.PathLike[str],
    *,
    writable: bool = False,
    strict: bool = True,
    parent: str | os.PathLike[str] | Image | None = None,
    resolve_parent: bool = True,
    _seen: tuple[str, ...] = (),
) -> VhdImage:
    """Open a VHD; a differencing disk gets its parent chain attached and verified."""
    spath = os.fspath(path)
    img = _open_vhd_file(spath, writable, strict)
    if isinstance(img, DifferencingImage) and (parent is not None or resolve_parent):
        try:
            _attach_chain(img, parent, strict, (*_seen, os.path.realpath(spath)))
        except BaseException:
            img.close()
            raise
    return img


def _open_vhd_file(path: str, writable: bool, strict: bool) -> VhdImage:
    fd = _os_open(path, writable)
    try:
        return _parse_vhd(path, fd, writable, strict)
    except ImageFormatError as exc:
        os.close(fd)
        if exc.path is None:
            exc.path = path
            exc.args = (f"{path}: {exc.args[0]}",)
        raise
    except BaseException:
        os.close(fd)
        raise


def _parse_vhd(path: str, fd: int, writable: bool, strict: bool) -> VhdImage:
    size = os.fstat(fd).st_size
    if size < FOOTER_SIZE:
        raise TruncatedImageError(
            f"file is {size} bytes, smaller than a VHD footer ({FOOTER_SIZE})",
            field="file size",
            offset=0,
            value=size,
        )
    head, tail = _read(path, fd, 0), _read(path, fd, size - FOOTER_SIZE)
    if tail[:8] == FOOTER_COOKIE:
        footer, raw = parse_footer(tail, size - FOOTER_SIZE, strict=strict), tail
        if footer.disk_type != DISK_FIXED and head != tail:
            _check_footer_copy(head, tail, size, strict)
    elif head[:8] == FOOTER_COOKIE:
        footer, raw = parse_footer(head, 0, strict=strict), head
        if strict or footer.disk_type == DISK_FIXED:
            raise TruncatedImageError(
                f"no footer at the end of the file (cookie at offset {size - FOOTER_SIZE} is"
                f" {tail[:8]!r}) though offset 0 holds a {footer.type_name} footer copy: the file"
                " is truncated or its end is damaged (an interrupted copy, usually); copy the"
                " image again from its source",
                field="cookie",
                offset=size - FOOTER_SIZE,
                value=tail[:8],
            )
        size += FOOTER_SIZE  # read as if the lost trailing footer were there
    else:
        raise ImageFormatError(
            f"no {FOOTER_COOKIE.decode()!r} cookie at offset 0 or at offset {size - FOOTER_SIZE}"
            f" (found {head[:8]!r} and {tail[:8]!r}): not a VHD file",
            field="cookie",
            offset=size - FOOTER_SIZE,
            value=tail[:8],
        )
    if footer.disk_type == DISK_FIXED:
        if size - FOOTER_SIZE != footer.current_size:
            short = size - FOOTER_SIZE < footer.current_size
            raise (TruncatedImageError if short else ImageFormatError)(
                f"current size at offset {size - FOOTER_SIZE + 48} is {footer.current_size} but"
                f" the fixed disk holds {size - FOOTER_SIZE} bytes of data",
                field="current size",
                offset=size - FOOTER_SIZE + 48,
                value=footer.current_size,
            )
        return FixedImage(path, fd, writable, footer)
    meta = load_metadata(path, fd, footer, size, strict=strict)
    cls2 = DifferencingImage if footer.disk_type == 4 else DynamicImage
    return cls2(path, fd, writable, footer, raw, meta, size)


def _check_footer_copy(head: bytes, tail: bytes, size: int, strict: bool) -> None:
    if not strict:
        return
    parse_footer(head, 0, strict=True)  # names the bad cookie/checksum at offset 0, if any
    at = next(i for i in range(FOOTER_SIZE) if head[i] != tail[i])
    raise ImageFormatError(
        f"footer copy at offset 0 differs from the footer at offset {size - FOOTER_SIZE}"
        f" (first difference at byte {at}); one of them is stale",
        field="footer copy",
        offset=at,
        value=head[at],
    )


def _attach_chain(
    child: DifferencingImage,
    parent: str | os.PathLike[str] | Image | None,
    strict: bool,
    seen: tuple[str, ...],
) -> None:
    if len(seen) > MAX_CHAIN_DEPTH:
        raise ChainLoopError(
            f"{child.path}: differencing chain is deeper than {MAX_CHAIN_DEPTH} levels;"
            " coalesce it (cloudservice vhd merge) before using it"
        )
    if parent is None or isinstance(parent, (str, os.PathLike)):
        ppath = os.fspath(parent) if parent is not None else find_parent(child)
        if os.path.realpath(ppath) in seen:
            raise ChainLoopError(
                f"{child.path}: parent {ppath} is already in this chain ({' -> '.join(seen)}):"
                " the chain loops"
            )
        parent_img: Image = open_vhd(ppath, strict=strict, _seen=seen)
    else:
        parent_img = parent
    try:
        verify_parent(child, parent_img)
    except BaseException:
        parent_img.close()
        raise
    child.attach_parent(parent_img)


def verify_parent(child: DifferencingImage, parent: Image) -> None:
    """Raise ParentMismatchError unless ``parent`` is the disk ``child`` was made against."""
    want = uuid.UUID(bytes=child.parent_unique_id)
    footer = getattr(parent, "footer", None)
    if footer is None:
        raise ParentMismatchError(
            f"{child.path}: parent {parent.path} is not a VHD, so it cannot be the parent"
            f" {want} recorded in the child"
        )
    got = uuid.UUID(bytes=footer.unique_id)
    if got != want:
        raise ParentMismatchError(
            f"{child.path}: parent unique id is {got} ({parent.path}) but the child was made"
            f" against {want}: {parent.path} is not its parent; use the disk it was made from"
        )
    if parent.virtual_size != child.virtual_size:
        raise ParentMismatchError(
            f"{child.path}: parent {parent.path} is {parent.virtual_size} bytes but the child"
            f" is {child.virtual_size}; a differencing disk must match its parent's size"
        )


def find_parent(child: DifferencingImage) -> str:
    """First existing file among the locator paths and the parent name, next to the child."""
    base = os.path.dirname(os.path.abspath(child.path))
    tried = []
    for raw in [*child.parent_paths(), child.header.parent_name]:
        if not raw:
            continue
        for cand in _candidates(raw, base):
            tried.append(cand)
            if os.path.isfile(cand):
                return cand
    raise ParentNotFoundError(
        f"{child.path}: parent {uuid.UUID(bytes=child.parent_unique_id)}"
        f" ({child.header.parent_name or 'no name recorded'}) not found; tried"
        f" {', '.join(dict.fromkeys(tried)) or 'nothing'}; put the parent disk at one of those"
        " paths, or give its path"
    )


def _candidates(raw: str, base: str) -> list[str]:
    win = PureWindowsPath(raw)
    if win.drive or "\\" in raw:  # a Windows path: same relative path, else same file name
        rel = [] if win.drive or win.root else [os.path.join(base, *win.parts)]
        return [*rel, os.path.join(base, win.name)]
    return [
        raw if os.path.isabs(raw) else os.path.join(base, raw),
        os.path.join(base, os.path.basename(raw)),
    ]


def chain_of(image: Image) -> list[Image]:
    """The image and its parents, top first."""
    out = [image]
    while (nxt := out[-1].parent) is not None:
        out.append(nxt)
    return out


def _os_open(path: str, writable: bool) -> int:
    try:
        return os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    except OSError as exc:
        raise ImageIOError(exc.errno, f"cannot open image: {exc.strerror}", path) from exc


def _read(path: str, fd: int, offset: int) -> bytes:
    buf = bytearray(FOOTER_SIZE)
    pread_exact(fd, memoryview(buf), offset, path)
    return bytes(buf)


def verify_chain(image: Image) -> list[ImageInfo]:
    """Check a whole opened chain: every child's parent id and size; infos top first.

    Opening already validated each file's structures; this re-checks the links (useful
    when the parent was passed in) and that a differencing image has its parent attached.
    """
    infos = []
    for layer in chain_of(image):
        if isinstance(layer, DifferencingImage):
            if layer.parent is None:
                raise ParentNotFoundError(f"{layer.path}: differencing disk has no parent attached")
            verify_parent(layer, layer.parent)
        infos.append(layer.info())
    return infos
