"""The service document: loading and dumping YAML and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cloudservice.model import MASK, ValidationProblems, dump_spec, load_spec

from ._helpers import spec


def test_yaml_and_json_documents_load_the_same(spec_data: dict[str, Any], tmp_path: Path) -> None:
    as_yaml = tmp_path / "s.yaml"
    as_json = tmp_path / "s.json"
    as_yaml.write_text(yaml.safe_dump(spec_data))
    as_json.write_text(json.dumps(spec_data))
    assert load_spec(as_yaml) == load_spec(as_json) == spec(spec_data)


def test_revealed_dump_loads_back_equal(spec_data: dict[str, Any], tmp_path: Path) -> None:
    original = spec(spec_data)
    for fmt in ("yaml", "json"):
        path = tmp_path / f"s.{fmt}"
        path.write_text(dump_spec(original, fmt=fmt, reveal_secrets=True))  # type: ignore[arg-type]
        assert load_spec(path) == original


def test_masked_dump_hides_secrets_and_does_not_validate_as_real(
    spec_data: dict[str, Any], tmp_path: Path
) -> None:
    text = dump_spec(spec(spec_data), fmt="yaml", reveal_secrets=False)
    assert "hunter2" not in text and MASK in text
    data = yaml.safe_load(text)
    assert data["configuration"]["roles"][0]["settings"]["DbPassword"] == {"secret": MASK}
    assert data["apiVersion"] == "cloudservice.model/v1"


def test_document_with_bom_loads(spec_data: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(spec_data).encode())
    assert load_spec(path).definition.name == "shop"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("definition: [unclosed", "not valid YAML/JSON"),
        ("- a list", "expected a mapping"),
        ("definition: {}\nconfiguration: {}\nextra: 1", "Extra inputs are not permitted"),
    ],
)
def test_bad_documents_are_problems(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValidationProblems, match=message):
        load_spec(path)


def test_missing_document_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ValidationProblems, match=f"{tmp_path / 'missing.yaml'}: does not exist$"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(ValidationProblems, match=f"{tmp_path}: is a directory, not a file$"):
        load_spec(tmp_path)
