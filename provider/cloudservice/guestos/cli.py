"""``cloudservice os ...``: build and list guest OS images.

    cloudservice os build [--family debian-12] [--version V] [--include PKG ...] [--out DIR]
    cloudservice os list [--json]

`build` prints the catalog entry as JSON (the same inputs reuse the image already built;
`--force` rebuilds, e.g. for updated Debian packages). Exit codes: 0 success, 1 the build
failed or a value is invalid (one message on stderr, no traceback), 2 bad usage.
Top-level imports stay light: the builder (and pydantic) load when a subcommand runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import GuestOsError

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def register(subparsers: Any) -> None:
    os_parser = subparsers.add_parser(
        "os", help="build and list guest OS images", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    os_parser.set_defaults(func=lambda args: _usage(os_parser))
    actions = os_parser.add_subparsers(dest="os_action", metavar="ACTION")

    p = actions.add_parser("build", help="build a guest OS image and record it in the catalog")
    p.add_argument("--family", default="debian-12", help="OS family (default: debian-12)")
    p.add_argument("--version", help="version to record (default: <today>-<n>)")
    p.add_argument(
        "--include", action="append", default=[], metavar="PKG",
        help="a Debian package to add (repeatable; also takes comma-separated lists)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="directory of the VHD (default: the cache)")
    p.add_argument("--force", action="store_true", help="rebuild even if the inputs are built")
    p.set_defaults(func=_build)

    p = actions.add_parser("list", help="list the catalog's guest OS images")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.set_defaults(func=_list)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _build(args: argparse.Namespace) -> int:
    from ._build import BuildOptions, build

    includes = tuple(pkg for value in args.include for pkg in value.split(",") if pkg)
    opts = BuildOptions(
        family=args.family, version=args.version, includes=includes,
        out=args.out.resolve() if args.out else None, force=args.force,
    )  # fmt: skip
    try:
        result = build(opts)
    except GuestOsError as exc:
        print(f"cloudservice os build: {exc}", file=sys.stderr)
        return EXIT_INVALID
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    how = "reused the image built from the same inputs" if result.reused else "built"
    print(f"cloudservice os build: {how} {result.entry.name} ({timings})", file=sys.stderr)
    print(result.entry.model_dump_json(indent=2))
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from ._catalog import Catalog

    try:
        catalog = Catalog.load()
    except ValueError as exc:
        print(f"cloudservice os list: the catalog is unreadable: {exc}", file=sys.stderr)
        return EXIT_INVALID
    entries = sorted(catalog.versions, key=lambda v: (v.family, v.sequence))
    if args.json:
        print(json.dumps([v.model_dump(mode="json") for v in entries], indent=2))
        return EXIT_OK
    if not entries:
        print("no guest OS images yet: run `cloudservice os build`", file=sys.stderr)
        return EXIT_OK
    for v in entries:
        extra = f"  +{','.join(v.includes)}" if v.includes else ""
        print(
            f"{v.name:28} {v.built_at:26} {v.image_size / (1 << 20):7.1f} MiB  "
            f"{v.kernel_release}  {v.image_sha256[:12]}  {v.image_path}{extra}"
        )
    return EXIT_OK
