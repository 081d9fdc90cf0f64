"""The schema is generated from the models and committed: this keeps the two in step."""

from __future__ import annotations

import json
from pathlib import Path

from cloudservice.resources.provider import RESOURCES
from cloudservice.resources.schema import build_schema

SCHEMA = Path(__file__).resolve().parents[2] / "provider" / "schema.json"


def test_committed_schema_matches_the_models() -> None:
    generated = build_schema(RESOURCES)
    committed = json.loads(SCHEMA.read_text())
    assert generated == committed, (
        "provider/schema.json is stale: run `cloudservice schema > provider/schema.json`"
    )
