"""One guest OS image for the session: built once, or reused from the catalog in the cache
(`~/.cache/cloudservice/guestos`, shared with `make guestos` and `cloudservice os build`)."""

from __future__ import annotations

import time

import pytest
from cloudservice.guestos import BuildOptions, GuestOsError, build
from cloudservice.guestos._build import BuildResult


@pytest.fixture(scope="session")
def guest_image() -> BuildResult:
    start = time.monotonic()
    try:
        result = build(BuildOptions())
    except GuestOsError as exc:
        pytest.fail(f"cannot build the guest OS image: {exc}", pytrace=False)
    how = "reused" if result.reused else "built"
    print(f"\nguest OS {result.entry.name} {how} in {time.monotonic() - start:.1f} s")
    return result
