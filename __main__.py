"""The default program: the sample cloud service, for the current stack.

Names on the host carry the stack name, so stacks (dev, staging, production) can share a host.
"""

from pathlib import Path

import pulumi

from components import Network, StoragePool, Volume

config = pulumi.Config()
stack = pulumi.get_stack()
prefix = f"cs-{stack}"

pool = StoragePool(
    "pool",
    name=f"{prefix}-pool",
    path=config.get("poolPath") or f"/var/lib/cloudservice/pools/{stack}",
)
network = Network(
    "network",
    name=f"{prefix}-net",
    cidr=config.get("cidr") or "10.213.0.0/24",
    mode=config.get("networkMode") or "nat",
)
content = Path(config.get("content") or "sample/welcome.html").resolve()
volume = Volume("content", pool=pool.name, name="welcome.html", source=str(content))

pulumi.export("pool", pool.name)
pulumi.export("network", network.name)
pulumi.export("bridge", network.bridge)
pulumi.export("volumePath", volume.path)
pulumi.export("volumeSha256", volume.source_sha256)
