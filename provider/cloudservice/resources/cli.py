"""`cloudservice schema`: print the provider's Pulumi package schema."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    schema = subparsers.add_parser("schema", help="print the provider's Pulumi package schema")
    schema.set_defaults(func=_schema)


def _schema(args: argparse.Namespace) -> int:
    from .provider import RESOURCES
    from .schema import build_schema

    print(json.dumps(build_schema(RESOURCES), indent=2, sort_keys=True))
    return 0
