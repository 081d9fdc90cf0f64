"""The generated Python SDK (sdk/python) is what `pulumi package gen-sdk` makes of the schema."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, Path]:
    return {
        str(path.relative_to(root)): path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path)
    }


def test_committed_sdk_is_generated_from_the_committed_schema(
    pulumi_cli: Path, tmp_path: Path
) -> None:
    subprocess.run(["bash", REPO / "toolchain" / "gen-sdk.sh", tmp_path], check=True)
    generated, committed = _files(tmp_path / "python"), _files(REPO / "sdk" / "python")
    assert sorted(generated) == sorted(committed), "run `make sdk`"
    stale = [name for name in generated if not filecmp.cmp(generated[name], committed[name], False)]
    assert not stale, f"sdk/python is stale in {stale}: run `make sdk`"
