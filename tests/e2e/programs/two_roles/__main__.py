"""Test program: two independent VM roles in one pulumi-libvirt pool, which Pulumi creates in
parallel.

Config `roleCount` (default 2) makes it one role, for the benchmark's like-for-like baseline.
"""

from pathlib import Path

import pulumi
import pulumi_cloudservice as cloudservice
import pulumi_libvirt as libvirt

config = pulumi.Config()
stack = pulumi.get_stack()
prefix = f"cs-{stack}"

pool = libvirt.Pool(
    "pool",
    name=f"{prefix}-pool",
    type="dir",
    target=libvirt.PoolTargetArgs(path=config.require("poolPath")),
)
image = str(Path(config.require("webImage")).resolve())
roles = [
    cloudservice.VmRole(
        f"role-{letter}",
        name=f"{prefix}-{letter}",
        pool=pool.name,
        image=image,
        instance_count=1,
        update_domain_count=1,
        # QEMU's user-mode forward accepts a connection before the guest listens, so an early
        # probe waits out its timeout: a short one keeps boot-to-healthy from jumping by it.
        probe=cloudservice.ProbeArgs(path="/health", interval_seconds=1, timeout_seconds=1),
        health_timeout_seconds=120,
    )
    for letter in "ab"[: config.get_int("roleCount") or 2]
]

pulumi.export("instances", pulumi.Output.all(*[role.instances for role in roles]))
