"""VHD disk engine: read, write, diff and chain VHD disks (never imports pulumi).

Shaped like QEMU's block layer.  :func:`open_image` returns an :class:`Image` (a context
manager) with ``read(offset, length)``, ``readinto(offset, buf)``, ``write(offset, data)``
(VHD, raw; opened ``writable=True``), ``block_status(offset) -> Extent(kind, length,
file_offset)`` and ``close()``.  Fixed, dynamic and differencing VHDs are three classes
behind that one Protocol; raw and qcow2 (read-only, via ``qemu-img map``) sit behind it too,
as diff inputs.  A differencing image reports BACKING, never ZERO, for what it leaves to its
parent; it is opened with its parent chain (found by locators / name, or ``parent=``) and
each link is checked by unique id.

Typical use::

    from cloudservice.vhd import open_image, diff_images

    with open_image("base.vhd") as parent, open_image("new.raw") as new:
        result = diff_images(parent, new, "update.vhd")
    print(result.blocks_changed, "blocks changed,", result.file_size, "bytes to upload")

Diffing against a parent that is not on this machine (the VM role's flow)::

    from cloudservice.vhd import make_manifest, BlockManifest, diff_against_manifest

    with open_image("base.vhd") as base:          # where the parent lives, once
        make_manifest(base).save("base.manifest.json")

    manifest = BlockManifest.load("base.manifest.json")   # anywhere later
    with open_image("new.qcow2") as new:
        result = diff_against_manifest(manifest, new, "update.vhd",
                                       parent_unique_id=None,   # default: manifest's
                                       parent_path="base.vhd")  # where the host keeps it
        qcow2_overlay_from_manifest(manifest, new, "update.qcow2",
                                    backing_file="base.vhd", backing_format="vpc")

API (signatures):

* ``open_image(path, *, format=None, writable=False, strict=True, parent=None,
  resolve_parent=True) -> Image``; ``format`` is "vhd", "raw", "qcow2" or None (probe).
* ``make_manifest(image, *, block_size=None) -> BlockManifest`` (JSON via ``to_json()`` /
  ``save(path)``; ``BlockManifest.from_json(doc)`` / ``load(path)``); ``scan_image(image)
  -> (BlockManifest, file sha256)`` reads a whole image's file once for both;
  ``scan_child(child, parent_manifest)`` reads only what a differencing image stores.
* ``diff_images(parent, new, out_path, *, block_size=None) -> DiffResult``
* ``diff_against_manifest(manifest, new, out_path, *, parent_unique_id=None,
  parent_path=None, parent_timestamp=None) -> DiffResult``
* ``write_qcow2_overlay(child, out_path, *, backing_file=None, backing_format="vpc")
  -> DiffResult`` (from a differencing VHD opened with its parent)
* ``qcow2_overlay_from_manifest(manifest, new, out_path, *, backing_file,
  backing_format="vpc") -> DiffResult``; ``layer_from_manifests(parent, target, new,
  out_path, *, backing_file, backing_format="vpc") -> DiffResult`` when ``new``'s manifest
  ``target`` is known (reads only the changed pages)
* ``qcow2_overlay_of(parent, new, out_path, *, backing_file=None, backing_format="vpc")
  -> DiffResult``: the same from two local images, compared byte for byte
* ``DiffResult``: ``blocks_changed``, ``blocks_total``, ``bytes_changed``, ``bytes_read``,
  ``file_size``, ``upload_bytes`` (what a sparse upload sends), ``as_dict()``.
* ``coalesce(image, out_path, *, fixed=False) -> int`` flattens a chain into one VHD;
  ``write_raw(image, out_path) -> int``; ``create_dynamic``, ``create_fixed`` (size a
  multiple of 1 MiB, Azure's layout), ``create_differencing``; ``VhdWriter`` streams a new
  dynamic/differencing VHD block by block.
* ``verify_chain(image) -> list[ImageInfo]``, ``chain_of(image)``, ``image_map(image)``.

Errors: see :mod:`cloudservice.vhd.errors` (root :class:`VhdError`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._diff import (
        DiffResult,
        diff_against_manifest,
        diff_images,
        layer_from_manifests,
        qcow2_overlay_from_manifest,
        qcow2_overlay_of,
        write_qcow2_overlay,
    )
    from ._differencing import DifferencingImage
    from ._dynamic import DynamicImage
    from ._fixed import FixedImage
    from ._image import Extent, ExtentKind, Image, ImageInfo
    from ._manifest import (
        PAGE,
        BlockManifest,
        ManifestChanges,
        make_manifest,
        scan_child,
        scan_image,
    )
    from ._open import MAX_CHAIN_DEPTH, chain_of, detect_format, open_image, verify_chain
    from ._walk import MapEntry, image_map
    from ._writer import (
        VhdWriter,
        coalesce,
        create_differencing,
        create_dynamic,
        create_fixed,
        write_raw,
    )
    from .errors import (
        ChainError,
        ChainLoopError,
        ChecksumError,
        ImageFormatError,
        ImageIOError,
        ImageUsageError,
        ManifestError,
        ParentMismatchError,
        ParentNotFoundError,
        ReadOnlyImageError,
        TruncatedImageError,
        VhdError,
    )

__all__ = [
    "MAX_CHAIN_DEPTH",
    "PAGE",
    "BlockManifest",
    "ChainError",
    "ChainLoopError",
    "ChecksumError",
    "DiffResult",
    "DifferencingImage",
    "DynamicImage",
    "Extent",
    "ExtentKind",
    "FixedImage",
    "Image",
    "ImageFormatError",
    "ImageIOError",
    "ImageInfo",
    "ImageUsageError",
    "ManifestChanges",
    "ManifestError",
    "MapEntry",
    "ParentMismatchError",
    "ParentNotFoundError",
    "ReadOnlyImageError",
    "TruncatedImageError",
    "VhdError",
    "VhdWriter",
    "chain_of",
    "coalesce",
    "create_differencing",
    "create_dynamic",
    "create_fixed",
    "detect_format",
    "diff_against_manifest",
    "diff_images",
    "image_map",
    "layer_from_manifests",
    "make_manifest",
    "open_image",
    "qcow2_overlay_from_manifest",
    "qcow2_overlay_of",
    "scan_child",
    "scan_image",
    "verify_chain",
    "write_qcow2_overlay",
    "write_raw",
]

# Each public name is imported from its module the first time it is used (PEP 562), so that
# importing one module of the package (``cloudservice vhd info`` runs ``vhd.cli``, which needs
# ``_open``) does not import the diff, manifest and writer machinery as well.
_MODULE_OF: dict[str, str] = {
    "MAX_CHAIN_DEPTH": "._open",
    "PAGE": "._manifest",
    "BlockManifest": "._manifest",
    "ChainError": ".errors",
    "ChainLoopError": ".errors",
    "ChecksumError": ".errors",
    "DiffResult": "._diff",
    "DifferencingImage": "._differencing",
    "DynamicImage": "._dynamic",
    "Extent": "._image",
    "ExtentKind": "._image",
    "FixedImage": "._fixed",
    "Image": "._image",
    "ImageFormatError": ".errors",
    "ImageIOError": ".errors",
    "ImageInfo": "._image",
    "ImageUsageError": ".errors",
    "ManifestChanges": "._manifest",
    "ManifestError": ".errors",
    "MapEntry": "._walk",
    "ParentMismatchError": ".errors",
    "ParentNotFoundError": ".errors",
    "ReadOnlyImageError": ".errors",
    "TruncatedImageError": ".errors",
    "VhdError": ".errors",
    "VhdWriter": "._writer",
    "chain_of": "._open",
    "coalesce": "._writer",
    "create_differencing": "._writer",
    "create_dynamic": "._writer",
    "create_fixed": "._writer",
    "detect_format": "._open",
    "diff_against_manifest": "._diff",
    "diff_images": "._diff",
    "image_map": "._walk",
    "layer_from_manifests": "._diff",
    "make_manifest": "._manifest",
    "open_image": "._open",
    "qcow2_overlay_from_manifest": "._diff",
    "qcow2_overlay_of": "._diff",
    "scan_child": "._manifest",
    "scan_image": "._manifest",
    "verify_chain": "._open",
    "write_qcow2_overlay": "._diff",
    "write_raw": "._writer",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
