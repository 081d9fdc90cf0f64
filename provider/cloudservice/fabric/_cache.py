"""The local cache: `$CLOUDSERVICE_CACHE`, else `~/.cache/cloudservice`. Everything in it can
be rebuilt (from the images and from the host's records); it only saves reading and fetching."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    root = os.environ.get("CLOUDSERVICE_CACHE") or Path.home() / ".cache" / "cloudservice"
    path = Path(root) / kind
    path.mkdir(parents=True, exist_ok=True)
    return path
