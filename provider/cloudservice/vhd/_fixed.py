"""Fixed VHDs: the raw disk followed by a 512-byte footer (the layout Azure requires)."""

from __future__ import annotations

import os
import uuid

from ._format import Footer
from ._image import ImageInfo
from ._raw import RawImage


class FixedImage(RawImage):
    """Disk data passes straight through; holes in the file are reported as ZERO."""

    type_name = "fixed"

    def __init__(self, path: str, fd: int, writable: bool, footer: Footer) -> None:
        super().__init__(path, fd, writable, footer.current_size)
        self.footer = footer

    def info(self) -> ImageInfo:
        return ImageInfo(
            path=self.path,
            type=self.type_name,
            virtual_size=self.virtual_size,
            block_size=None,
            file_size=os.fstat(self._fd).st_size,
            unique_id=str(uuid.UUID(bytes=self.footer.unique_id)),
            timestamp=self.footer.timestamp,
            creator=_creator(self.footer),
        )


def _creator(footer: Footer) -> str:
    app = footer.creator_app.decode("latin-1")
    return f"{app!r} {footer.creator_version >> 16}.{footer.creator_version & 0xFFFF}"
