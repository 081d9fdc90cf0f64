"""The package's public names: all there, imported from their module only when first used."""

from __future__ import annotations

import importlib
import subprocess
import sys

import cloudservice.vhd as vhd
import pytest


def test_every_public_name_resolves_to_its_module() -> None:
    assert sorted(vhd._MODULE_OF) == sorted(vhd.__all__)
    for name in vhd.__all__:
        module = importlib.import_module(vhd._MODULE_OF[name], "cloudservice.vhd")
        assert getattr(vhd, name) is getattr(module, name)
    assert set(vhd.__all__) <= set(dir(vhd))


def test_star_import_binds_all_names() -> None:
    namespace: dict[str, object] = {}
    exec("from cloudservice.vhd import *", namespace)
    assert set(vhd.__all__) <= set(namespace)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        vhd.nope  # noqa: B018
    with pytest.raises(ImportError):
        exec("from cloudservice.vhd import nope", {})


def test_importing_the_package_imports_no_module_of_it() -> None:
    code = (
        "import sys, cloudservice.vhd; "
        "print(sorted(m for m in sys.modules if m.startswith('cloudservice.vhd.')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
