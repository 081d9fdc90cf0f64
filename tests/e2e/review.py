"""A stack's pull-request comment, as the workflow gets it: the repository's script
(`cloudservice preview-comment`, what `make preview-comment` runs) driving the real CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pulumi import automation as auto

from tests.review.capture import keep

from .project import REPO


def review(
    stack: auto.Stack,
    case: str,
    tmp: Path,
    expect_failure: bool = False,
    names: dict[str, str] | None = None,
) -> str:
    """The comment for the stack's next `up`; its JSON is kept as fixture `case` when capturing,
    with stacks' random names as `names` says (default: this stack's as "staging")."""
    saved = tmp / f"preview-{case}.json"
    ran = subprocess.run(
        ["cloudservice", "preview-comment", "--stack", stack.name, "--save-json", str(saved)],
        cwd=stack.workspace.work_dir,
        env={**os.environ, **stack.workspace.env_vars},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == (1 if expect_failure else 0), ran.stderr + ran.stdout
    assert "Traceback" not in ran.stderr + ran.stdout
    names = names or {stack.name: "staging"}
    places = {str(REPO): "<repo>", str(tmp): "<tmp>", str(Path.home()): "<home>"}
    keep(saved, case, {**places, **names})
    return ran.stdout
