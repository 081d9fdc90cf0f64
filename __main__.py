"""The default program: the sample cloud service (sample/service.yaml), for the current stack.

The storage pool and the service's network are pulumi-libvirt's (`libvirt.Pool`,
`libvirt.Network`); the service's roles are ours, declared by the `CloudService` component.
Each provider talks to the host in its own stack config: `libvirt:uri` and `cloudservice:uri`
(default qemu:///system).

Names on the host carry the stack name, so stacks (dev, staging, production) can share a host.
Stack config (stacks/Pulumi.<stack>.yaml) sets what differs between them, checked before
anything is touched (components/stack_config.py: an unknown key or a wrong value is one error
naming the key and the file):

    poolPath                        where the service's disks live on the host
    cidr                            the service network's subnet (Web and Worker roles)
    frontDoorAddress                where the front door listens (default 127.0.0.1)
    frontDoorPorts                  its ports by listener, e.g. {"Web.HttpIn": 8080}
    serviceFile                     the service document (default sample/service.yaml)
    instances                       instance counts by role, e.g. {"Web": 3}
    upgradeMode                     auto, manual or simultaneous (default: the service's)
    images                          VM role images by role (.vhd paths)
    packages                        role packages by role (a .cspkg or a directory)
    osVersion                       the guest OS version of Web and Worker roles ("*": newest)
    secretSettings                  secret setting values by role, set with --secret --path
    certificates                    certificate and key (PEM) by thumbprint, set with --secret
    webImage, webInstances          the VM role "Web"'s .vhd and instance count
    manualUpdateDomain              in manual upgrade mode, the last update domain to upgrade
    healthTimeoutSeconds            how long a health gate waits for an instance
    promoteFrom                     run only what that stack ran healthy (production: staging)
    hosts                           libvirt hosts as fault domains: [{uri, cidr, poolPath}, ...],
                                    the first being cloudservice:uri's (each its own subnet)

The stack exports `releases` (per role, the digests it ran healthy); a stack with promoteFrom
reads its source's and refuses, before anything is touched, a release the source has not run.
"""

import signal
from pathlib import Path

import pulumi
import pulumi_cloudservice as cloudservice
import pulumi_libvirt as libvirt

from components import (
    CloudService,
    ServiceHost,
    gated,
    load_service,
    load_stack_config,
    promotion_gate,
    role_artifacts,
)
from components.fault_domains import check_hosts
from components.stack_config import stack_file

# When an update fails, Pulumi's language host ends the program with SIGINT (the engine is done
# with it); Python would print a KeyboardInterrupt traceback under the real error. Die quietly.
signal.signal(signal.SIGINT, signal.SIG_DFL)

config = pulumi.Config()
settings = load_stack_config()
stack, project = pulumi.get_stack(), pulumi.get_project()
prefix = f"cs-{stack}"

service_file = Path(settings.service_file or "sample/service.yaml").resolve()
spec = load_service(service_file)  # a problem with the file is one line naming file and key
images = {role: str(Path(path).resolve()) for role, path in settings.images.items()}
if settings.web_image:
    images["Web"] = str(Path(settings.web_image).resolve())

# A promoted stack (production) declares nothing until its source stack is found to have run
# every release it would deploy: each resource below waits on the check.
promoted = None
if settings.promote_from:
    artifacts = role_artifacts(spec, service_file.parent, images, settings.packages)
    promoted = promotion_gate(settings.promote_from, spec, artifacts)


counts: dict[str, int] = dict(settings.instances)
if settings.web_instances is not None:
    counts["Web"] = settings.web_instances

pool_path = settings.pool_path or f"/var/lib/cloudservice/pools/{stack}"
cidr = str(settings.cidr or "10.213.0.0/24")
if settings.hosts:
    # The first host is the one the stack's providers talk to (values never shown: a URI may
    # hold a secret); its subnet may be given beside it.
    own = {"cloudservice": pulumi.Config("cloudservice").get("uri") or "qemu:///system"}
    own["libvirt"] = pulumi.Config("libvirt").get("uri") or own["cloudservice"]
    for provider, uri in own.items():
        if settings.hosts[0].uri != uri:
            raise pulumi.RunError(
                f"{stack_file(stack)}: config {project}:hosts[0].uri must be the host "
                f"{provider}:uri names (the stack's first host)"
            )
    cidr = str(settings.hosts[0].cidr or cidr)
    check_hosts(settings.hosts, stack_file(stack))
# Web and Worker roles sit on the service network; so does every role of a service spread
# over several hosts (a host's loopback forwards reach only that host).
networked = len(settings.hosts) > 1 or any(role.kind != "vm" for role in spec.definition.roles)


def host_resources(
    host: str, cidr: str, path: str, opts: pulumi.ResourceOptions | None = None
) -> tuple[libvirt.Pool, libvirt.Network | None]:
    """The service's storage pool and network (pulumi-libvirt's) on one host."""
    pool = libvirt.Pool(
        f"pool{host}",
        name=gated(promoted, f"{prefix}-pool"),
        type="dir",
        target=libvirt.PoolTargetArgs(path=path),
        opts=opts,
    )
    network = None
    if networked:
        network = libvirt.Network(
            f"network{host}",
            name=gated(promoted, f"{prefix}-net"),
            mode="nat",
            addresses=[cidr],
            dhcp=libvirt.NetworkDhcpArgs(enabled=True),
            autostart=True,
            opts=opts,
        )
    return pool, network


# The first host is the stack's own (libvirt:uri, cloudservice:uri); each further host in
# `hosts` is a fault domain with providers of its own.
first_path = (settings.hosts[0].pool_path if settings.hosts else None) or pool_path
pool, network = host_resources("", cidr, first_path)
more_hosts = []
for number, host in enumerate(settings.hosts[1:], start=1):
    if networked and host.cidr is None:
        raise pulumi.RunError(
            f"{stack_file(stack)}: config {project}:hosts[{number}].cidr: each host needs "
            "a subnet of its own for the service network"
        )
    on_host = pulumi.ResourceOptions(
        provider=libvirt.Provider(f"libvirt-host{number}", uri=host.uri)
    )
    extra_pool, extra_network = host_resources(
        f"-host{number}", str(host.cidr), host.pool_path or pool_path, on_host
    )
    more_hosts.append(
        ServiceHost(
            pool=extra_pool.name,
            provider=cloudservice.Provider(f"cloudservice-host{number}", uri=host.uri),
            network=extra_network.name if extra_network else None,
            cidr=str(host.cidr) if host.cidr else None,
        )
    )

service = CloudService(
    "sample",
    spec,
    pool=pool.name,
    prefix=prefix,
    base_dir=service_file.parent,
    network=network.name if network else None,
    cidr=cidr,
    more_hosts=more_hosts,
    front_door_address=settings.front_door_address or "127.0.0.1",
    front_door_ports=settings.front_door_ports,
    images=images,
    instance_counts=counts,
    packages=settings.packages,
    os_version=settings.os_version,
    upgrade_mode=settings.upgrade_mode,
    # Secrets as Pulumi's secret outputs: validated above, never held as plain values.
    secret_settings=config.get_secret_object("secretSettings"),
    certificates=config.get_secret_object("certificates"),
    manual_update_domain=settings.manual_update_domain,
    health_timeout_seconds=settings.health_timeout_seconds,
    promoted=promoted,
)

pulumi.export("pool", pool.name)
pulumi.export("instances", service.instances)
pulumi.export("imageChains", service.image_chains)
pulumi.export("endpoints", service.endpoints)
pulumi.export("releases", service.releases)
