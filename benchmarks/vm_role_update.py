"""VM role update benchmark: a 2 GiB image with about 1% of its blocks changed.

Measures, with the real CLI and libvirtd (TCG guests):
- bytes streamed to the host by our update, against re-uploading the whole image (what a plain
  libvirt volume update does), as a ratio;
- the wall time of `pulumi up` for the update (2 instances, 2 update domains, health gates);
- boot-to-healthy time per instance, as the provider records it.

    .venv/bin/python benchmarks/vm_role_update.py [--size-mib 2048] [--change-mib 20]

Images go to /var/tmp/cloudservice-bench (reused between runs); the stack is destroyed at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulumi import automation as auto  # noqa: E402

from tests.e2e.project import REPO, make_project, make_stack  # noqa: E402

VMROLE = "cloudservice:index:VmRole"


def build_images(out: Path, size_mib: int, change_mib: int) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "toolchain/testimage/build.py"), "--out", str(out),
         "--size-mib", str(size_mib), "--fill-mib", str(size_mib - 148),
         "--change-mib", str(change_mib), "--version", "v1", "v2"],
        check=True,
    )  # fmt: skip


def role_state(stack: auto.Stack) -> dict[str, Any]:
    resources = stack.export_stack().deployment.get("resources", [])
    return next(r["outputs"] for r in resources if r["type"] == VMROLE)


def timed_up(stack: auto.Stack) -> float:
    start = time.monotonic()
    stack.up()
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--change-mib", type=int, default=20)
    args = parser.parse_args()

    images = Path("/var/tmp/cloudservice-bench") / f"{args.size_mib}m-{args.change_mib}c"
    build_images(images, args.size_mib, args.change_mib)
    v1, v2 = images / "web-v1.vhd", images / "web-v2.vhd"

    with tempfile.TemporaryDirectory() as work:
        stack = make_stack(make_project(Path(work) / "project"), Path(work) / "state", "bench")
        try:
            stack.set_config("webInstances", auto.ConfigValue("2"))
            stack.set_config("webImage", auto.ConfigValue(str(v1)))
            first_up = timed_up(stack)
            first = role_state(stack)
            stack.set_config("webImage", auto.ConfigValue(str(v2)))
            update_up = timed_up(stack)
            second = role_state(stack)
        finally:
            stack.destroy(suppress_progress=True)
            stack.workspace.remove_stack(stack.name)

    layer = second["layers"][-1]
    streamed, whole = second["lastUploadBytes"], v2.stat().st_size
    report = {
        "image_virtual_size_bytes": layer["virtualSize"],
        "image_file_bytes": whole,
        "blocks_changed": layer["blocksChanged"],
        "blocks_total": layer["virtualSize"] // (2 * 1024 * 1024),
        "update_bytes_streamed": streamed,
        "reupload_bytes": whole,
        "reupload_over_update_ratio": round(whole / streamed, 1),
        "pulumi_up_create_seconds": round(first_up, 1),
        "pulumi_up_update_seconds": round(update_up, 1),
        "boot_to_healthy_seconds_create": [i["healthyAfterSeconds"] for i in first["instances"]],
        "boot_to_healthy_seconds_update": [i["healthyAfterSeconds"] for i in second["instances"]],
        "update_domains_in_order": second["updateDomainsUpgraded"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
