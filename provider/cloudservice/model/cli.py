"""Subcommands of ``cloudservice`` for the service model.

    validate FILE | CSDEF CSCFG       check a service document, or an Azure file pair
    import-azure CSDEF CSCFG          write the service as a YAML (or --json) document
    export-azure FILE -o DIR          write a service document back as .csdef and .cscfg
    package build DIR -o OUT          build a deterministic role package
    package diff A B                  files added, removed and changed between two packages
    plan OLD NEW                      how each role gets from OLD to NEW (package files
                                      named without packageDigest are read for theirs)

Exit codes: 0 success, 1 invalid input (every problem listed on stderr), 2 bad usage.
Results go to stdout, problems and warnings to stderr. Secret values are never printed:
they appear as ``{"secret": "**********"}``. Only ``import-azure -o FILE`` and
``export-azure`` (its .cscfg) write them in clear, to files readable by their owner only.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

# Only the errors and the file helpers here: the pydantic models, the Azure reader, packages and
# the planner are imported by the subcommands that use them.
from ..files import write_atomically
from .errors import ModelError, Problem, ValidationProblems

if TYPE_CHECKING:
    from ._spec import ServiceSpec
    from ._validate import Sources

EXIT_OK = 0
EXIT_INVALID = 1

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> None:
    """Add the model's subcommands to the ``cloudservice`` parser."""
    validate = subparsers.add_parser(
        "validate", help="check a service document, or a .csdef and .cscfg pair"
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="service.yaml, or CSDEF CSCFG")
    validate.add_argument(
        "--require-packages", action="store_true", help="web and worker roles must have a package"
    )
    validate.set_defaults(func=_validate, usage_error=validate.error)

    azure = subparsers.add_parser("import-azure", help="convert Azure .csdef/.cscfg files")
    azure.add_argument("csdef", metavar="CSDEF", help="ServiceDefinition.csdef")
    azure.add_argument("cscfg", metavar="CSCFG", help="ServiceConfiguration.cscfg")
    azure.add_argument("--json", action="store_true", help="write JSON instead of YAML")
    azure.add_argument(
        "-o", "--output", metavar="OUT", help="write to OUT (with secret values) instead of stdout"
    )
    azure.set_defaults(func=_import_azure)

    export = subparsers.add_parser(
        "export-azure", help="write a service document as Azure .csdef and .cscfg files"
    )
    export.add_argument("document", metavar="FILE", help="service document")
    export.add_argument(
        "-o", "--output", metavar="DIR", required=True, help="directory for the two files"
    )
    export.set_defaults(func=_export_azure)

    package = subparsers.add_parser("package", help="build and compare role packages")
    package_commands = package.add_subparsers(dest="package_command", metavar="COMMAND")
    package_commands.required = True
    build = package_commands.add_parser("build", help="build a role package from a directory")
    build.add_argument("directory", metavar="DIR")
    build.add_argument("-o", "--output", metavar="OUT", required=True, help="package file")
    build.add_argument("--entry-point", help="command that runs the role")
    build.add_argument(
        "--startup-task",
        action="append",
        default=[],
        metavar="COMMAND",
        help="a simple startup task (repeatable, run in order)",
    )
    build.set_defaults(func=_package_build)
    diff = package_commands.add_parser("diff", help="compare two role packages")
    diff.add_argument("old", metavar="A")
    diff.add_argument("new", metavar="B")
    diff.add_argument("--json", action="store_true", help="write JSON")
    diff.set_defaults(func=_package_diff)

    plan = subparsers.add_parser("plan", help="plan the update from one service to another")
    plan.add_argument("old", metavar="OLD", help="current service document")
    plan.add_argument("new", metavar="NEW", help="desired service document")
    plan.add_argument("--json", action="store_true", help="write JSON")
    plan.set_defaults(func=_plan)


def _reports_problems(handler: Handler) -> Handler:
    """Turn model errors into a problem list on stderr and exit code 1, never a traceback."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ValidationProblems as exc:
            _print_problems("error", exc.problems)
            count = len(exc.problems)
            print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        except ModelError as exc:
            print(f"error: {exc}", file=sys.stderr)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID

    return run


def _print_problems(kind: str, problems: Iterable[Problem]) -> None:
    for problem in problems:
        print(f"{kind}: {problem}", file=sys.stderr)


def _load(files: list[str]) -> tuple[ServiceSpec, Sources]:
    from ._azure import import_azure
    from ._spec import load_spec
    from ._validate import Sources

    if len(files) == 1:
        return load_spec(files[0]), Sources.document(files[0])
    imported = import_azure(files[0], files[1])
    _print_problems("warning", imported.warnings)
    return imported.spec, Sources.azure(files[0], files[1])


@_reports_problems
def _validate(args: argparse.Namespace) -> int:
    from ._validate import validate_service

    if len(args.files) > 2:
        args.usage_error("give one service document, or a .csdef and a .cscfg")  # exits 2
    spec, sources = _load(args.files)
    validate_service(spec, sources, require_packages=args.require_packages)
    roles = len(spec.definition.roles)
    print(f"{spec.definition.name}: valid ({roles} role{'s' if roles != 1 else ''})")
    return EXIT_OK


@_reports_problems
def _import_azure(args: argparse.Namespace) -> int:
    from ._azure import import_azure
    from ._spec import dump_spec

    imported = import_azure(args.csdef, args.cscfg)
    _print_problems("warning", imported.warnings)
    fmt: Literal["yaml", "json"] = "json" if args.json else "yaml"
    if args.output is None:
        sys.stdout.write(dump_spec(imported.spec, fmt=fmt, reveal_secrets=False))
        return EXIT_OK
    text = dump_spec(imported.spec, fmt=fmt, reveal_secrets=True)
    _write_private(Path(args.output), text)
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _write_private(path: Path, text: str | bytes) -> None:
    # The file holds secret values in clear: readable by its owner only, from its creation.
    data = text.encode("utf-8") if isinstance(text, str) else text
    write_atomically(path, data, mode=0o600)


@_reports_problems
def _export_azure(args: argparse.Namespace) -> int:
    from ._azure import export_cscfg, export_csdef
    from ._spec import load_spec
    from ._validate import Sources, validate_service

    spec = load_spec(args.document)
    validate_service(spec, Sources.document(args.document))
    directory = Path(args.output)
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / "ServiceDefinition.csdef", export_csdef(spec.definition))
    _write_private(
        directory / "ServiceConfiguration.cscfg", export_cscfg(spec.configuration, spec.artifacts)
    )
    print(
        f"wrote {directory}/ServiceDefinition.csdef and ServiceConfiguration.cscfg", file=sys.stderr
    )
    return EXIT_OK


@_reports_problems
def _package_build(args: argparse.Namespace) -> int:
    from ._definition import StartupTask
    from ._package import build_package

    tasks = [StartupTask(command_line=command) for command in args.startup_task]
    package = build_package(
        args.directory, args.output, entry_point=args.entry_point, startup_tasks=tasks
    )
    files = len(package.manifest.files)
    print(f"{package.path}: sha256 {package.digest}, {package.size} bytes, {files} files")
    return EXIT_OK


@_reports_problems
def _package_diff(args: argparse.Namespace) -> int:
    from ._package import diff_packages, read_package

    diff = diff_packages(read_package(args.old).manifest, read_package(args.new).manifest)
    if args.json:
        print(json.dumps(diff.model_dump(mode="json", by_alias=True), indent=2))
        return EXIT_OK
    for sign, changes in (("+", diff.added), ("-", diff.removed), ("~", diff.changed)):
        for change in changes:
            sizes = " -> ".join(
                str(size) for size in (change.old_size, change.new_size) if size is not None
            )
            print(f"{sign} {change.path} ({sizes or 'link'})")
    print(diff.summary())
    return EXIT_OK


@_reports_problems
def _plan(args: argparse.Namespace) -> int:
    from ._package import fill_package_digests
    from ._planner import plan_update
    from ._spec import load_spec
    from ._validate import Sources, validate_service

    old = load_spec(args.old)
    new = load_spec(args.new)
    problems: list[Problem] = []
    for spec, path in ((old, args.old), (new, args.new)):
        try:
            validate_service(spec, Sources.document(path))
        except ValidationProblems as exc:
            problems.extend(exc.problems)
    if problems:
        raise ValidationProblems(problems)
    # Packages named without a digest are read, so new code shows up in the plan.
    plan = plan_update(
        fill_package_digests(old, Path(args.old).parent),
        fill_package_digests(new, Path(args.new).parent),
    )
    if args.json:
        print(json.dumps(plan.model_dump(mode="json", by_alias=True), indent=2))
        return EXIT_OK
    for role in plan.roles:
        print(role.summary)
        for warning in role.warnings:
            print(f"  warning: {warning}")
    for note in plan.notes:
        print(note)
    print(plan.summary)
    return EXIT_OK
