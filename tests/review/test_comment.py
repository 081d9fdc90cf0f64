"""The pull-request comment, from previews the real CLI printed (fixtures/, see capture.py):
golden files pin it whole, and the properties a reviewer relies on are checked by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cloudservice.review import MARKER, parse_preview, render_comment

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"
# Which stack each real preview was of (its random name was replaced by this one).
STACKS = {
    "dev-create": "dev",
    "promotion-refused": "production",
    "promotion-accepted": "production",
}


def _comment(case: str) -> str:
    document = json.loads((FIXTURES / f"{case}.json").read_text())
    return render_comment(parse_preview(document), STACKS.get(case, "staging"))


@pytest.mark.parametrize("case", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_comment_matches_golden(case: str) -> None:
    assert _comment(case) == (GOLDEN / f"{case}.md").read_text()


def test_every_fixture_has_a_golden_comment() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.md")) == sorted(
        p.stem for p in FIXTURES.glob("*.json")
    )


def test_first_line_marks_the_stack_so_the_workflow_updates_its_own_comment() -> None:
    assert _comment("web-package").splitlines()[0] == MARKER.format(stack="staging")
    assert (
        _comment("promotion-refused").splitlines()[0] == "<!-- cloudservice-preview:production -->"
    )


def test_a_replacement_is_called_out_before_anything_else() -> None:
    lines = _comment("vm-replace").splitlines()
    warning = lines.index("> [!WARNING]")
    assert warning < next(i for i, line in enumerate(lines) if line.startswith("#### "))
    assert "> - **Web** (VM role): `updateDomainCount` `2` → `3`" in lines


def test_a_refused_promotion_says_why_and_names_the_digest() -> None:
    comment = _comment("promotion-refused")
    assert "### `pulumi preview` of **production**: failed" in comment
    assert "**The preview failed**" in comment
    assert (
        "image sha256:bc26364e64856f70" in comment and "(web-v2.vhd) has not run healthy" in comment
    )
    assert "program exited with non-zero exit code" not in comment  # the engine's echo of it


def test_secrets_are_masked_even_when_the_preview_showed_them() -> None:
    document = json.loads((FIXTURES / "web-settings.json").read_text())
    web = next(s for s in document["steps"] if s["urn"].endswith("sample-Web"))
    # As `pulumi preview --show-secrets` would print them: plain values.
    web["oldState"]["inputs"]["secretSettings"] = {"ApiKey": "old-key-4711"}
    web["newState"]["inputs"]["secretSettings"] = {"ApiKey": "new-key-4712"}
    web["diffReasons"] = [*web["diffReasons"], "secretSettings"]
    web["newState"]["inputs"]["settings"] = {"Greeting": "[secret]"}
    comment = render_comment(parse_preview(document), "staging")
    assert "key-471" not in comment
    assert "`secretSettings` (secret, masked)" in comment
    assert "`Greeting` `hello` → (secret, masked)" in comment


def test_an_unchanged_stack_says_so() -> None:
    document = json.loads((FIXTURES / "web-package.json").read_text())
    for step in document["steps"]:
        step["op"] = "same"
    document["diagnostics"], document["changeSummary"] = [], {"same": 8}
    comment = render_comment(parse_preview(document), "staging")
    assert comment.endswith("No changes: `pulumi up` would leave every role as it runs.\n")
    assert "#### " not in comment


def test_a_new_stack_lists_what_each_role_will_run() -> None:
    comment = _comment("dev-create")
    assert "#### **Worker** (Worker role): create\n\n- 1 instance over 2 update domains" in comment
    assert "- OS `debian-12/" in comment and "- image `web-v1.vhd` (c0b01b7c53a1)" in comment
