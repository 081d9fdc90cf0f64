"""Guest OS images for Web and Worker role instances: the builder and the catalog.

`cloudservice os build` makes a bootable dynamic VHD from Debian packages (mmdebstrap, a
Debian kernel, a busybox initramfs, the guest agent) and records it in the catalog
(`~/.cache/cloudservice/guestos/catalog.json`); `Catalog.load().resolve(family, version)`
finds it again. See docs/guest.md for the contract with the fabric and the agent.

Never imports pulumi or libvirt. `bootdisk` (the disk-building pieces) uses only the standard
library, since `toolchain/testimage/build.py` runs it under the system python3; the names
below that need pydantic are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import BuildError, GuestOsError, UnknownOsVersion

if TYPE_CHECKING:
    from ._build import FAMILIES, BuildOptions, build
    from ._catalog import Catalog, OsVersion, catalog_path

__all__ = [
    "FAMILIES",
    "BuildError",
    "BuildOptions",
    "Catalog",
    "GuestOsError",
    "OsVersion",
    "UnknownOsVersion",
    "build",
    "catalog_path",
]

_LAZY = {
    "FAMILIES": "._build",
    "BuildOptions": "._build",
    "build": "._build",
    "Catalog": "._catalog",
    "OsVersion": "._catalog",
    "catalog_path": "._catalog",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
