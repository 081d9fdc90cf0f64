"""The ``cloudservice`` console command: one entry point, a subcommand group per package.

Exit codes (every subcommand): 0 success, 1 invalid input (the problems are printed),
2 bad usage. User errors never print a traceback.

Start-up stays fast because nothing is imported for a subcommand that does not run: the table
below names every subcommand, its help line and the module that implements it, and only the
module of the subcommand on the command line is imported (``--help`` imports none). The other
subcommands get placeholder parsers with the same name and help line, so the top-level help
and "invalid choice" errors read as they would with every module loaded. A module's
``register(subparsers)`` adds its real subcommands, each setting ``func(args) -> int``; the
module keeps its own top-level imports light and imports what a subcommand needs when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (module, ((subcommand, help line), ...)), in the order of `cloudservice --help`. The help
# lines repeat the ones each module registers; tests/test_cli.py checks that they agree.
_SUBCOMMANDS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("cloudservice.virt.cli", (("host", "inspect the libvirt host"),)),
    ("cloudservice.resources.cli", (("schema", "print the provider's Pulumi package schema"),)),
    (
        "cloudservice.model.cli",
        (
            ("validate", "check a service document, or a .csdef and .cscfg pair"),
            ("import-azure", "convert Azure .csdef/.cscfg files"),
            ("export-azure", "write a service document as Azure .csdef and .cscfg files"),
            ("package", "build and compare role packages"),
            ("plan", "plan the update from one service to another"),
        ),
    ),
    ("cloudservice.vhd.cli", (("vhd", "read, diff, merge and convert VHD disks"),)),
    ("cloudservice.guestos.cli", (("os", "build and list guest OS images"),)),
    (
        "cloudservice.review.cli",
        (("preview-comment", "write a stack's preview as a pull-request comment (Markdown)"),),
    ),
)

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def subcommand_modules() -> dict[str, str]:
    """Every subcommand's name and the module that implements it, in help order."""
    return {name: module for module, commands in _SUBCOMMANDS for name, _ in commands}


def build_parser(*commands: str) -> argparse.ArgumentParser:
    """The parser, with the real subparsers of ``commands`` (their modules are imported).

    Every other subcommand gets a placeholder: its name and help line, nothing to run.
    ``build_parser(*subcommand_modules())`` builds the whole parser.
    """
    parser = argparse.ArgumentParser(
        prog="cloudservice",
        description="Azure Cloud Services on your own libvirt/QEMU hosts.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, entries in _SUBCOMMANDS:
        if any(name in commands for name, _ in entries):
            importlib.import_module(module_name).register(subparsers)
        else:
            for name, help_line in entries:
                subparsers.add_parser(name, help=help_line)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line: the first argument that is not an option.

    The top-level parser's only option is ``-h``, which takes no value, so that argument is
    where argparse looks for the subcommand.
    """
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(arguments)
    parser = build_parser(*([command] if command is not None else []))
    args = parser.parse_args(arguments)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
