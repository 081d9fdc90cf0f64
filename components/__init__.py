"""Component resources for programs: a whole cloud service from its service document.

    from components import CloudService, load_service, load_stack_config

The provider's own resources come from its generated SDK (`pulumi_cloudservice`, in
sdk/python); the storage pool and the network a service lives in come from pulumi-libvirt.
"""

from .cloud_service import CloudService, ServiceHost, load_service, role_artifacts
from .promotion import RoleRelease, gated, promotion_gate
from .stack_config import StackConfig, load_stack_config

__all__ = [
    "CloudService",
    "RoleRelease",
    "ServiceHost",
    "StackConfig",
    "gated",
    "load_service",
    "load_stack_config",
    "promotion_gate",
    "role_artifacts",
]
