"""Test program: the generic libvirt objects (a pool, a network, a volume of a file's bytes)."""

from pathlib import Path

import pulumi

from components import Network, StoragePool, Volume

config = pulumi.Config()
stack = pulumi.get_stack()
prefix = f"cs-{stack}"

pool = StoragePool("pool", name=f"{prefix}-pool", path=config.require("poolPath"))
network = Network("network", name=f"{prefix}-net", cidr=config.require("cidr"), mode="nat")
content = Path(config.get("content") or "welcome.html").resolve()
volume = Volume("content", pool=pool.name, name="welcome.html", source=str(content))

pulumi.export("pool", pool.name)
pulumi.export("network", network.name)
pulumi.export("volumePath", volume.path)
