"""Shared fixtures: the real toolchain and the real libvirt host, or one clear failure.

Nothing here skips. When the pinned Pulumi CLI or libvirtd is missing, the tests that need
them fail with a message that says which and what to run (`make setup`).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudservice.virt import DEFAULT_URI, Host, HypervisorError

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".cache" / "bin"

# Tests run the same CLI and language host as `make up`, even when pytest is started by hand.
os.environ["PATH"] = f"{BIN}:{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"
os.environ.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
os.environ.setdefault("PULUMI_DIY_BACKEND_NO_LEGACY_WARNING", "true")


def pinned_pulumi_version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'"pulumi==([0-9.]+)"', text)
    assert match, "pyproject.toml must pin pulumi=="
    return match.group(1)


# End-to-end tests (the `e2e` marker of pyproject.toml): those that drive the real Pulumi CLI,
# boot a real guest or stop the real libvirtd. Marked here, not in each file: every test under
# tests/e2e (the CLI against libvirtd), and the tests named in E2E_TESTS elsewhere
# (tests/testimage boots the sample images; its other tests check the image builder and boot
# nothing; tests/virt/test_deadline.py SIGSTOPs libvirtd for a moment).
# `pytest -m e2e` runs these, `pytest -m "not e2e"` the rest.
E2E_FOLDERS = (REPO / "tests" / "e2e",)
E2E_TESTS = (
    "tests/testimage/test_boot.py::test_image_boots_and_serves",
    "tests/guestos/test_boot.py::test_image_boots_takes_a_dhcp_address_and_starts_the_agent",
    "tests/fabric/test_layers.py::test_a_complete_layer_the_state_never_recorded_is_adopted",
    "tests/fabric/test_layers.py::test_a_partial_or_swapped_layer_is_replaced",
    "tests/fabric/test_layers.py::test_a_damaged_or_foreign_cache_entry_is_not_trusted",
    "tests/virt/test_deadline.py::test_a_stopped_libvirtd_fails_an_upload_within_the_deadline",
)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.resolve()
        if not path.is_relative_to(REPO):  # a test file given from elsewhere
            continue
        test = f"{path.relative_to(REPO).as_posix()}::{getattr(item, 'originalname', item.name)}"
        if test in E2E_TESTS or any(path.is_relative_to(folder) for folder in E2E_FOLDERS):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def pulumi_cli() -> Path:
    """The pinned Pulumi CLI, set up by `make setup`."""
    cli = BIN / "pulumi"
    if not cli.exists():
        pytest.fail(f"the Pulumi CLI is not set up at {cli}: run `make setup`", pytrace=False)
    version = subprocess.run([str(cli), "version"], capture_output=True, text=True, check=False)
    wanted = pinned_pulumi_version()
    if version.stdout.strip().lstrip("v") != wanted:
        pytest.fail(
            f"{cli} is version {version.stdout.strip() or version.stderr.strip()!r}, "
            f"not the pinned v{wanted}: run `make setup`",
            pytrace=False,
        )
    return cli


@pytest.fixture(scope="session")
def libvirt_uri() -> str:
    """A libvirtd that answers on qemu:///system, started by `make setup`."""
    try:
        with Host(DEFAULT_URI) as host:
            host.version()
    except HypervisorError as exc:
        pytest.fail(f"libvirt is not available: {exc}", pytrace=False)
    return DEFAULT_URI


@pytest.fixture
def host(libvirt_uri: str) -> Iterator[Host]:
    with Host(libvirt_uri) as connection:
        yield connection
