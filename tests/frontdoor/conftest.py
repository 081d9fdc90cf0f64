from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cloudservice.frontdoor import FrontDoor

from .backends import Backend

if shutil.which("haproxy") is None:
    pytest.fail("haproxy is not installed: run `make setup`", pytrace=False)


@pytest.fixture
def directory() -> Iterator[Path]:
    # Short: a unix socket path has at most 107 bytes, pytest's tmp_path can be longer.
    parent = Path(tempfile.mkdtemp(prefix="fd-"))
    yield parent / "door"
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def door(directory: Path) -> Iterator[FrontDoor]:
    front_door = FrontDoor(directory)
    yield front_door
    front_door.stop(timeout=5)


@pytest.fixture
def backends() -> Iterator[Callable[..., list[Backend]]]:
    started: list[Backend] = []

    def start(*names: str) -> list[Backend]:
        new = [Backend(name) for name in names]
        started.extend(new)
        return new

    yield start
    for backend in started:
        backend.stop()
