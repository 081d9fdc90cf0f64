"""What a release image holds, read once per version of its file: its SHA-256 and manifest.

Scanning a multi-GiB image is the expensive part of an `up`; `pulumi up` checks its inputs in
the preview and again in the update, and a stack may run many times with the same image.
So a scan is kept in the local cache under the file's identity as the kernel reports it
(device, inode, size, modification and change times to the nanosecond; any rewrite moves the
change time, which no program can set back). A changed file is scanned afresh; a cache entry
that is unreadable or of another file is ignored. A layer built from a scan re-checks the
digest of every page it ships, so even a file changed between the scan and the upload is
caught, never shipped under the old scan's name.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .. import vhd
from ..files import sha256_of_file, write_atomically
from ._cache import cache_dir


@dataclass(frozen=True)
class Scan:
    """One version of a release image: the SHA-256 of its file and its page manifest."""

    sha256: str
    manifest: vhd.BlockManifest


def scan_release(path: str) -> Scan:
    """The image's scan: from the cache when this version of the file was scanned before,
    else by reading it (once, for a whole image; for a differencing one, what it stores,
    over its parent's scan)."""
    identity, real = _identity(path), os.path.realpath(path)
    if (known := _seen.get(real)) and known[0] == identity:
        return known[1]  # this process read it already (check, preview and update all ask)
    entry = _entry(path)
    try:
        cached = json.loads(entry.read_bytes())
        if cached.get("identity") == identity:
            scanned = Scan(cached["sha256"], vhd.BlockManifest.from_json(cached["manifest"]))
            _seen[real] = (identity, scanned)
            return scanned
    except (OSError, ValueError, KeyError, TypeError, AttributeError, vhd.ManifestError):
        pass  # no entry, or not one to trust: scan
    manifest, sha256 = _scan(path)
    document = {"identity": identity, "sha256": sha256, "manifest": manifest.to_json()}
    write_atomically(entry, json.dumps(document, separators=(",", ":")).encode())
    _seen[real] = (identity, Scan(sha256, manifest))
    return _seen[real][1]


def _scan(path: str) -> tuple[vhd.BlockManifest, str]:
    """Read the image: whole, or (a differencing one) only what it stores over its parent's
    scan, itself cached: an update shipped as a differencing disk costs its own size."""
    with vhd.open_image(path, format="vhd") as image:
        if image.parent is None:
            return vhd.scan_image(image)
        parent = scan_release(image.parent.path).manifest
        return vhd.scan_child(image, parent), sha256_of_file(path)


_seen: dict[str, tuple[list[int | str], Scan]] = {}  # by real path: this process's scans


def _identity(path: str) -> list[int | str]:
    st = os.stat(path)
    return [
        os.path.realpath(path),
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
    ]


def _entry(path: str) -> Path:
    name = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:32]
    return cache_dir("scans") / f"{name}.json"
