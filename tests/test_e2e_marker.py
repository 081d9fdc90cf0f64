"""The tests that tests/conftest.py marks `e2e` by name still exist under that name."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import E2E_TESTS, REPO


@pytest.mark.parametrize("test", E2E_TESTS)
def test_each_named_e2e_test_exists(test: str) -> None:
    path, name = test.split("::")
    tree = ast.parse((REPO / path).read_text())
    functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert name in functions, f"{test} is gone: update E2E_TESTS in tests/conftest.py"
