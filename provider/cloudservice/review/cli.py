"""`cloudservice preview-comment`: a stack's preview as a pull-request comment (Markdown)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HELP = "write a stack's preview as a pull-request comment (Markdown)"


def register(subparsers: Any) -> None:
    comment = subparsers.add_parser("preview-comment", help=HELP, description=HELP)
    comment.add_argument("--stack", required=True, help="the stack to preview (e.g. staging)")
    comment.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="read `pulumi preview --diff --json` output from FILE instead of running it",
    )
    comment.add_argument(
        "--save-json", type=Path, metavar="FILE", help="also keep pulumi's JSON preview in FILE"
    )
    comment.add_argument(
        "-o", "--output", type=Path, help="write the comment here (default stdout)"
    )
    comment.set_defaults(func=_preview_comment)


def _preview_comment(args: argparse.Namespace) -> int:
    """Exit 0 with the comment; 1 when the preview failed (the comment then says why)."""
    from . import parse_preview, render_comment

    text, failed = _document(args)
    if args.save_json:
        args.save_json.write_text(text)
    try:
        document = json.loads(text)
    except ValueError:
        print(
            f"cloudservice preview-comment: pulumi printed no JSON preview:\n{text}",
            file=sys.stderr,
        )
        return 1
    preview = parse_preview(document)
    comment = render_comment(preview, args.stack)
    if args.output:
        args.output.write_text(comment)
    else:
        sys.stdout.write(comment)
    return 1 if failed or preview.errors else 0


def _document(args: argparse.Namespace) -> tuple[str, bool]:
    if args.json is not None:
        return args.json.read_text(), False
    command = ["pulumi", "preview", "--diff", "--json", "--non-interactive", "--stack", args.stack]
    try:
        ran = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return 'the pulumi CLI is not on PATH: run `eval "$(make -s env)"`', True
    if ran.returncode != 0 and not ran.stdout.strip():
        return ran.stderr.strip(), True
    return ran.stdout, ran.returncode != 0
