"""Test program: two independent VM roles and a file volume, which Pulumi creates in parallel.

Config `roleCount` (default 2) makes it one role, for the benchmark's like-for-like baseline.
"""

from pathlib import Path

import pulumi

from components import StoragePool, VmRole, Volume

config = pulumi.Config()
stack = pulumi.get_stack()
prefix = f"cs-{stack}"

pool = StoragePool("pool", name=f"{prefix}-pool", path=config.require("poolPath"))
image = str(Path(config.require("webImage")).resolve())
roles = [
    VmRole(
        f"role-{letter}",
        name=f"{prefix}-{letter}",
        pool=pool.name,
        image=image,
        instance_count=1,
        update_domain_count=1,
        probe={"path": "/health", "intervalSeconds": 1},
        health_timeout_seconds=120,
    )
    for letter in "ab"[: config.get_int("roleCount") or 2]
]
page = Path(__file__).with_name("__main__.py")
volume = Volume("content", pool=pool.name, name="program.py", source=str(page))

pulumi.export("instances", pulumi.Output.all(*[role.instances for role in roles]))
