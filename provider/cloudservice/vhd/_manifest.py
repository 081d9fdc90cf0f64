"""Block manifests: an image's per-block SHA-256, so a later diff needs no parent bytes.

JSON form (``BlockManifest.to_json()``)::

    {"format": "cloudservice-vhd-manifest", "version": 1, "hash": "sha256",
     "virtual_size": 4294967296, "block_size": 2097152,
     "unique_id": "6f1c...", "timestamp": 848950230, "name": "base.vhd",
     "blocks": {"0": "<64 hex>", "17": "<64 hex>", ...}}

A block not listed in ``blocks`` reads as zeros (unallocated or all-zero data): that keeps
a sparse 2 TB image's manifest small.  A hash is of the whole block, zero-padded past the
end of the disk.  SHA-256 (not a fast checksum) because the manifest decides what is
"unchanged": a crafted image must not be able to collide with a parent block.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..files import write_atomically
from ._image import Image, is_zero
from ._walk import data_blocks, read_block
from .errors import ImageIOError, ManifestError

MANIFEST_FORMAT = "cloudservice-vhd-manifest"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class BlockManifest:
    """Per-block digests of one image; ``digests`` maps block index -> hex SHA-256."""

    virtual_size: int
    block_size: int
    unique_id: str | None
    timestamp: int | None = None
    name: str | None = None
    digests: dict[int, str] = field(default_factory=dict)

    @property
    def block_count(self) -> int:
        return -(-self.virtual_size // self.block_size)

    def digest(self, index: int) -> str | None:
        """Hex digest of block ``index``, or None if it reads as zeros."""
        return self.digests.get(index)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "hash": "sha256",
            "virtual_size": self.virtual_size,
            "block_size": self.block_size,
            "unique_id": self.unique_id,
            "timestamp": self.timestamp,
            "name": self.name,
            "blocks": {str(i): d for i, d in sorted(self.digests.items())},
        }

    @classmethod
    def from_json(cls, doc: Any) -> BlockManifest:
        """Validate and load; raises ManifestError naming the bad key."""
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"not a block manifest: 'format' must be {MANIFEST_FORMAT!r}")
        if doc.get("version") != MANIFEST_VERSION or doc.get("hash") != "sha256":
            raise ManifestError(
                f"unsupported manifest version {doc.get('version')!r} / hash {doc.get('hash')!r};"
                f" this engine reads version {MANIFEST_VERSION} with sha256"
            )
        size, bs = doc.get("virtual_size"), doc.get("block_size")
        if (
            not isinstance(size, int)
            or size <= 0
            or not isinstance(bs, int)
            or bs <= 0
            or bs & (bs - 1)
        ):
            raise ManifestError(
                f"manifest virtual_size {size!r} / block_size {bs!r} must be positive integers,"
                " the block size a power of two"
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
            _digests(doc.get("blocks"), -(-size // bs)),
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


def make_manifest(image: Image, *, block_size: int | None = None) -> BlockManifest:
    """Hash every block of ``image`` (through its chain) that is not known to be zero.

    ``block_size`` defaults to the image's own (2 MiB for raw/fixed/qcow2); a later diff
    against the manifest writes a child with this block size.
    """
    bs = block_size or getattr(image, "block_size", None) or 2 * 1024 * 1024
    footer = getattr(image, "footer", None)
    digests = dict(hash_blocks(image, bs))
    return BlockManifest(
        virtual_size=image.virtual_size,
        block_size=bs,
        unique_id=str(uuid.UUID(bytes=footer.unique_id)) if footer else None,
        timestamp=footer.timestamp if footer else None,
        name=os.path.basename(image.path),
        digests=digests,
    )


def hash_blocks(image: Image, block_size: int) -> Iterator[tuple[int, str]]:
    """(index, hex sha256) of every block with non-zero content."""
    for index, _n, _buf, digest in hashed_blocks(image, block_size, data_blocks(image, block_size)):
        if digest is not None:
            yield index, digest


def hashed_blocks(
    image: Image, block_size: int, indices: Iterable[int]
) -> Iterator[tuple[int, int, bytearray, str | None]]:
    """(index, bytes read, block buffer, sha256 hex or None if all zero) for each index.

    Double-buffered: a worker thread hashes one block (hashlib drops the GIL) while this
    thread reads the next, so throughput is max(read, hash) instead of their sum.  The
    yielded buffer is valid until the next iteration.
    """
    bufs = (bytearray(block_size), bytearray(block_size))
    pending: tuple[int, int, bytearray, Future[str | None]] | None = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        for turn, index in enumerate(indices):
            buf = bufs[turn % 2]
            got = read_block(image, index, block_size, memoryview(buf))
            job = pool.submit(_digest, buf, got)
            if pending is not None:
                yield pending[0], pending[1], pending[2], pending[3].result()
            pending = (index, got, buf, job)
        if pending is not None:
            yield pending[0], pending[1], pending[2], pending[3].result()


def _digest(buf: bytearray, got: int) -> str | None:
    if got == 0 or is_zero(buf, 0, len(buf)):
        return None
    return hashlib.sha256(buf).hexdigest()


def _digests(blocks: Any, count: int) -> dict[int, str]:
    if not isinstance(blocks, dict):
        raise ManifestError("manifest 'blocks' must be an object of index -> sha256 hex")
    out = {}
    for key, value in blocks.items():
        if not (isinstance(key, str) and key.isdigit() and int(key) < count):
            raise ManifestError(f"manifest block index {key!r} is not in 0..{count - 1}")
        if not (
            isinstance(value, str)
            and len(value) == 64
            and all(c in "0123456789abcdef" for c in value)
        ):
            raise ManifestError(f"manifest block {key} digest {value!r} is not sha256 hex")
        out[int(key)] = value
    return out


def _opt_int(doc: dict[str, Any], key: str) -> int | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, int):
        raise ManifestError(f"manifest {key!r} must be an integer, not {value!r}")
    return value
