"""`cloudservice host check`: can this machine run the fabric?"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._host import DEFAULT_URI


def register(subparsers: Any) -> None:
    host = subparsers.add_parser("host", help="inspect the libvirt host")
    commands = host.add_subparsers(dest="host_command", metavar="COMMAND", required=True)
    check = commands.add_parser("check", help="connect to libvirt and probe KVM")
    check.add_argument("--uri", default=DEFAULT_URI, help="libvirt URI (default %(default)s)")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from ._accel import detect_accelerator
    from ._host import Host
    from .errors import HypervisorError

    try:
        with Host(args.uri) as host:
            version = host.version()
    except HypervisorError as exc:
        print(f"cloudservice: {exc}", file=sys.stderr)
        return 1
    accel = detect_accelerator()
    report = {
        "uri": args.uri,
        "libvirt": version,
        "domainType": accel.domain_type,
        "reason": accel.reason,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"libvirt {version} at {args.uri}; guests run as type={accel.domain_type} "
            f"({accel.reason})"
        )
    return 0
