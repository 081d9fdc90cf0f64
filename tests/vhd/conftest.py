"""Fixtures for the VHD engine tests: small images generated in tmp_path, never committed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from vhd_helpers import MIB, make_raw, pattern


@pytest.fixture
def base_raw(tmp_path: Path) -> Path:
    """64 MiB raw: data in blocks 0, 1 (partly), 5 and 31; the rest sparse."""
    return make_raw(
        tmp_path / "base.raw",
        64 * MIB,
        [
            (0, pattern(2 * MIB, 1)),
            (2 * MIB + 4096, pattern(8192, 2)),
            (10 * MIB, pattern(MIB, 3)),
            (62 * MIB, pattern(2 * MIB, 4)),
        ],
    )


@pytest.fixture
def new_raw(tmp_path: Path, base_raw: Path) -> Path:
    """base_raw changed: a page in block 0, zeros over part of block 5, new data in block 20."""
    new = tmp_path / "new.raw"
    shutil.copyfile(base_raw, new)
    with open(new, "r+b") as fh:
        fh.seek(8192)
        fh.write(pattern(4096, 5))
        fh.seek(10 * MIB + 65536)
        fh.write(bytes(131072))
        fh.seek(40 * MIB + 12288)
        fh.write(pattern(20480, 6))
    return new
