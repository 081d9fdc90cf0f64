"""Fixtures of this folder: real `pulumi preview --diff --json` documents, trimmed.

The e2e tests that preview a change keep the CLI's document when CLOUDSERVICE_CAPTURE_PREVIEWS
names a directory: `CLOUDSERVICE_CAPTURE_PREVIEWS=tests/review/fixtures pytest tests/e2e`.
Trimming keeps what the comment reads (steps' inputs, diffs, diagnostics, counts) and replaces
what is of one machine or run (paths, the stack's random name) with placeholders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CAPTURE = "CLOUDSERVICE_CAPTURE_PREVIEWS"
_STATE_KEYS = ("type", "parent", "inputs")
_STEP_KEYS = ("op", "urn", "diffReasons", "replaceReasons", "detailedDiff")


def trim(document: dict[str, Any], replacements: dict[str, str]) -> dict[str, Any]:
    steps = []
    for raw in document.get("steps") or []:
        step = {key: raw[key] for key in _STEP_KEYS if raw.get(key) is not None}
        for state in ("oldState", "newState"):
            if raw.get(state):
                step[state] = {k: raw[state][k] for k in _STATE_KEYS if k in raw[state]}
        steps.append(step)
    trimmed = {
        "steps": steps,
        "diagnostics": document.get("diagnostics") or [],
        "changeSummary": document.get("changeSummary") or {},
    }
    text = json.dumps(trimmed, indent=1, sort_keys=True)
    for old, new in sorted(replacements.items(), key=lambda item: -len(item[0])):
        text = text.replace(old, new)
    return dict(json.loads(text))


def keep(saved: Path, case: str, replacements: dict[str, str]) -> None:
    """Keep the preview document `saved` as fixture `case`, when capturing."""
    directory = os.environ.get(CAPTURE)
    if not directory:
        return
    trimmed = trim(json.loads(saved.read_text()), replacements)
    (Path(directory) / f"{case}.json").write_text(
        json.dumps(trimmed, indent=1, sort_keys=True) + "\n"
    )
