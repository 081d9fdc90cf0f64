"""The ``cloudservice`` entry point: lazy subcommands, same parser as with every module loaded."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cloudservice.cli import EXIT_USAGE, build_parser, main, subcommand_modules

HEAVY = ("pydantic", "yaml", "libvirt", "pulumi", "grpc")


def _subparsers(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action


def _modules_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"import sys, json, io, contextlib\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    modules: list[str] = json.loads(proc.stdout.splitlines()[-1])
    return modules


def test_placeholders_match_what_the_modules_register() -> None:
    lazy = build_parser()
    full = build_parser(*subcommand_modules())
    assert lazy.format_help() == full.format_help()
    assert list(_subparsers(lazy).choices) == list(_subparsers(full).choices)


@pytest.mark.parametrize("module", sorted(set(subcommand_modules().values())))
def test_each_module_registers_the_subcommands_the_table_names(module: str) -> None:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    importlib.import_module(module).register(subparsers)
    table = [name for name, owner in subcommand_modules().items() if owner == module]
    assert list(subparsers.choices) == table


def test_help_imports_no_subcommand_module() -> None:
    modules = _modules_after(
        "from cloudservice.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass"
    )
    loaded = [m for m in modules if m.startswith("cloudservice.") and m != "cloudservice.cli"]
    assert loaded == []
    assert [m for m in modules if m.split(".")[0] in HEAVY] == []


def test_vhd_info_imports_only_what_it_runs(tmp_path: Path) -> None:
    from cloudservice.vhd import create_dynamic

    disk = tmp_path / "d.vhd"
    create_dynamic(disk, 4 * 1024 * 1024)
    modules = _modules_after(
        "from cloudservice.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['vhd', 'info', {str(disk)!r}]) == 0"
    )
    assert [m for m in modules if m.split(".")[0] in HEAVY] == []
    packages = {m.split(".")[1] for m in modules if m.startswith("cloudservice.")}
    assert packages == {"cli", "vhd"}
    for unused in ("_diff", "_manifest", "_writer", "_qcow2_writer"):
        assert f"cloudservice.vhd.{unused}" not in modules


def test_unknown_command_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == EXIT_USAGE
    names = ", ".join(repr(name) for name in subcommand_modules())
    assert f"invalid choice: 'frobnicate' (choose from {names})" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    help_text = capsys.readouterr().err
    assert re.search(r"\n +vhd +read, diff, merge and convert VHD disks\n", help_text), help_text


def test_help_before_a_command_is_the_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["-h", "vhd"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == build_parser().format_help()
