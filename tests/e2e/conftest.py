"""Each test gets its own project copy, state backend and stack; the stack is destroyed after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pulumi import automation as auto

from .project import make_project, make_stack


@pytest.fixture
def project(tmp_path: Path, pulumi_cli: Path, libvirt_uri: str) -> Path:
    return make_project(tmp_path / "project")


@pytest.fixture
def stack(project: Path, tmp_path: Path) -> Iterator[auto.Stack]:
    created = make_stack(project, tmp_path / "state")
    yield created
    created.destroy(suppress_progress=True)
    created.workspace.remove_stack(created.name)
