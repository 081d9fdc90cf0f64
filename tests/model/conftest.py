"""Fixtures for the model tests."""

from __future__ import annotations

from typing import Any

import pytest

from ._helpers import base_data


@pytest.fixture
def spec_data() -> dict[str, Any]:
    """A valid service document as data; tests change it to make the case they need."""
    return base_data()
