"""The ``cloudservice`` console command: one entry point, a subcommand group per package.

Exit codes (every subcommand): 0 success, 1 invalid input (the problems are printed),
2 bad usage. User errors never print a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module exposes ``register(subparsers)``; a subcommand sets ``func(args) -> int``.
_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "cloudservice.virt.cli",
    "cloudservice.resources.cli",
)
_SUBCOMMAND_MODULES += ("cloudservice.model.cli",)
_SUBCOMMAND_MODULES += ("cloudservice.vhd.cli",)

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudservice",
        description="Azure Cloud Services on your own libvirt/QEMU hosts.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
