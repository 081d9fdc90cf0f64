"""``cloudservice vhd``: through the installed console script and in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cloudservice.cli import main
from cloudservice.vhd import coalesce, open_image
from vhd_helpers import MIB, qemu_img, sha256_file

# The console script installed beside the interpreter that runs the tests (the virtualenv's).
CLI = Path(sys.executable).parent / "cloudservice"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if not CLI.exists():
        pytest.fail(f"{CLI} missing: run `make setup` (pip install -e . into the virtualenv)")
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def parent_vhd(tmp_path: Path, base_raw: Path) -> Path:
    with open_image(base_raw, format="raw") as src:
        coalesce(src, tmp_path / "parent.vhd")
    return tmp_path / "parent.vhd"


def test_full_workflow_via_console_script(tmp_path: Path, parent_vhd: Path, new_raw: Path) -> None:
    child = tmp_path / "child.vhd"
    diff = run("vhd", "diff", parent_vhd, new_raw, "-o", child, "--json")
    assert diff.returncode == 0, diff.stderr
    assert json.loads(diff.stdout)["blocks_changed"] == 3

    info = run("vhd", "info", child, "--json")
    doc = json.loads(info.stdout)
    assert doc["type"] == "differencing" and doc["virtual_size"] == 64 * MIB
    assert doc["block_size"] == 2 * MIB
    with open_image(parent_vhd) as p:
        assert doc["parent_unique_id"] == p.info().unique_id

    assert run("vhd", "verify", child).stdout.startswith("OK: ")
    assert run("vhd", "apply", parent_vhd, child, "-o", tmp_path / "out.raw").returncode == 0
    assert sha256_file(tmp_path / "out.raw") == sha256_file(new_raw)

    assert run("vhd", "merge", child, "-o", tmp_path / "merged.vhd").returncode == 0
    qemu_img("compare", "-f", "vpc", "-F", "raw", tmp_path / "merged.vhd", new_raw)

    over = run("vhd", "to-qcow2", child, "-o", tmp_path / "o.qcow2", "--json")
    assert over.returncode == 0, over.stderr
    qemu_img("compare", "-F", "raw", tmp_path / "o.qcow2", new_raw)


def test_info_of_dynamic_and_fixed(tmp_path: Path, base_raw: Path) -> None:
    with open_image(base_raw, format="raw") as src:
        coalesce(src, tmp_path / "f.vhd", fixed=True)
        coalesce(src, tmp_path / "d.vhd")
    fixed = json.loads(run("vhd", "info", tmp_path / "f.vhd", "--json").stdout)
    dynamic = json.loads(run("vhd", "info", tmp_path / "d.vhd", "--json").stdout)
    assert (fixed["type"], fixed["virtual_size"], fixed["block_size"]) == ("fixed", 64 * MIB, None)
    assert (dynamic["type"], dynamic["block_size"]) == ("dynamic", 2 * MIB)
    assert "parent_unique_id" not in dynamic
    human = run("vhd", "info", tmp_path / "d.vhd").stdout
    assert "type: dynamic" in human and "virtual_size: 67108864" in human


def test_invalid_disk_exits_1_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.vhd"
    bad.write_bytes(bytes(4096))
    proc = run("vhd", "info", bad)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "not a VHD file" in proc.stderr


def test_mismatched_parent_exits_1(tmp_path: Path, parent_vhd: Path, new_raw: Path) -> None:
    run("vhd", "diff", parent_vhd, new_raw, "-o", tmp_path / "c.vhd")
    with open_image(new_raw, format="raw") as src:
        coalesce(src, tmp_path / "other.vhd")
    proc = run("vhd", "verify", tmp_path / "c.vhd", "--parent", tmp_path / "other.vhd")
    assert proc.returncode == 1
    assert "parent unique id is" in proc.stderr and "Traceback" not in proc.stderr


def test_a_manifest_of_a_raw_image_cannot_be_a_parent(tmp_path: Path, new_raw: Path) -> None:
    assert run("vhd", "manifest", new_raw, "-o", tmp_path / "raw.json").returncode == 0
    proc = run("vhd", "diff", tmp_path / "raw.json", new_raw, "-o", tmp_path / "c.vhd")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "records no VHD unique id" in proc.stderr
    assert "make the manifest from the parent VHD" in proc.stderr
    assert "parent_unique_id" not in proc.stderr and "parent_path" not in proc.stderr
    assert not (tmp_path / "c.vhd").exists()


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    assert run("vhd", "diff", "only-one-arg").returncode == 2
    assert run("vhd").returncode == 2
    assert run("vhd", "frobnicate").returncode == 2


def test_missing_file_exits_1(tmp_path: Path) -> None:
    proc = run("vhd", "info", tmp_path / "nope.vhd")
    assert proc.returncode == 1 and "No such file" in proc.stderr


def test_in_process(
    tmp_path: Path, parent_vhd: Path, new_raw: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["vhd", "diff", str(parent_vhd), str(new_raw), "-o", str(tmp_path / "c.vhd")]) == 0
    assert "3 of 32 blocks changed" in capsys.readouterr().out
    assert main(["vhd", "manifest", str(parent_vhd), "-o", str(tmp_path / "m.json")]) == 0
    capsys.readouterr()
    os.makedirs(tmp_path / "remote")
    assert (
        main(
            [
                "vhd",
                "diff",
                str(tmp_path / "m.json"),
                str(new_raw),
                "-o",
                str(tmp_path / "remote" / "c.vhd"),
                "--parent-path",
                "../parent.vhd",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["blocks_changed"] == 3
    assert main(["vhd", "verify", str(tmp_path / "remote" / "c.vhd"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and len(doc["chain"]) == 2
    assert main(["vhd", "info", str(tmp_path / "nope.vhd")]) == 1
    assert "cannot open image" in capsys.readouterr().err
