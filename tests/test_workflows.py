"""The pull-request workflow: valid for GitHub (actionlint), and running the repository's own
script for both stacks, so what it posts is what tests/review checks."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from .conftest import BIN, REPO

WORKFLOWS = REPO / ".github" / "workflows"


def test_workflows_pass_actionlint() -> None:
    actionlint = BIN / "actionlint"
    if not actionlint.exists():
        pytest.fail(f"actionlint is not set up at {actionlint}: run `make setup`", pytrace=False)
    checked = subprocess.run(
        [str(actionlint), "-no-color"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_preview_workflow_comments_for_staging_and_production() -> None:
    workflow = yaml.safe_load((WORKFLOWS / "preview.yml").read_text())
    assert list(workflow[True]) == ["pull_request"]  # YAML 1.1 reads the key `on` as True
    job = workflow["jobs"]["preview"]
    stacks = [entry["stack"] for entry in job["strategy"]["matrix"]["include"]]
    assert stacks == ["staging", "production"]
    runs = [step.get("run", "") for step in job["steps"]]
    assert 'make preview-comment STACK="$STACK" COMMENT="$COMMENT"' in runs
    posting = next(s for s in job["steps"] if "github-script" in s.get("uses", ""))
    assert "updateComment" in posting["with"]["script"]  # updated on new pushes, not repeated
