"""Exceptions of the VHD engine.

One root, categories under it, so a caller catches at the level it can act on::

    VhdError                            root: anything this package raises on purpose
    ├── ImageFormatError(ValueError)    the bytes are not a valid image
    │   ├── ChecksumError               footer/header checksum mismatch (strict=False skips)
    │   └── TruncatedImageError         the file ends before a structure it declares
    ├── ImageIOError(OSError)           the operating system failed a read/write/fsync
    ├── ChainError                      a differencing chain cannot be assembled
    │   ├── ParentNotFoundError         no parent file at any locator or by name
    │   ├── ParentMismatchError(ValueError)  parent unique id or size is not the child's
    │   └── ChainLoopError              the chain loops or is deeper than MAX_CHAIN_DEPTH
    ├── ManifestError(ValueError)       a block manifest is malformed or does not fit
    └── ImageUsageError(RuntimeError)   misuse by the caller, not bad data
        └── ReadOnlyImageError          write to an image opened read-only

(In parentheses: the built-in exception each also inherits, so ``except ValueError`` and
``except OSError`` clauses keep working.)

Format errors carry ``field``, ``offset`` (byte offset in the file, if any) and ``value`` so
a caller (or the CLI) can report exactly what was wrong.  Lower-layer ``OSError`` is turned
into ``ImageIOError`` at the package boundary, with the path.
"""

from __future__ import annotations

__all__ = [
    "ChainError",
    "ChainLoopError",
    "ChecksumError",
    "ImageFormatError",
    "ImageIOError",
    "ImageUsageError",
    "ManifestError",
    "ParentMismatchError",
    "ParentNotFoundError",
    "ReadOnlyImageError",
    "TruncatedImageError",
    "VhdError",
]


class VhdError(Exception):
    """Root of every error the VHD engine raises on purpose."""


class ImageFormatError(VhdError, ValueError):
    """The image is not valid: a field has a value the format does not allow.

    The message names the field, its value and its byte offset; the image cannot be used
    as it is.  Recreate it, or, for a checksum only, open with ``strict=False``.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        offset: int | None = None,
        value: object = None,
        path: str | None = None,
    ) -> None:
        self.field = field
        self.offset = offset
        self.value = value
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(where + message)


class ChecksumError(ImageFormatError):
    """A footer or dynamic header checksum does not match.  ``strict=False`` accepts it."""


class TruncatedImageError(ImageFormatError):
    """The file is shorter than its own structures say (an interrupted copy, usually)."""


class ImageIOError(VhdError, OSError):
    """The operating system failed an I/O call on the image; may be retried once fixed."""


class ChainError(VhdError):
    """A differencing disk's chain of parents cannot be assembled."""


class ParentNotFoundError(ChainError):
    """No parent file was found; pass it explicitly (``parent=`` / ``--parent``)."""


class ParentMismatchError(ChainError, ValueError):
    """The parent given or found is not the one the child was made against."""


class ChainLoopError(ChainError):
    """The chain refers back to one of its own images, or is too deep to be sane."""


class ManifestError(VhdError, ValueError):
    """A block manifest is malformed or does not fit the image it is used with."""


class ImageUsageError(VhdError, RuntimeError):
    """The caller used the API wrongly (closed image, out-of-range I/O, bad argument)."""


class ReadOnlyImageError(ImageUsageError):
    """Write to an image opened read-only: open it with ``writable=True``."""
