"""Component resources for programs: a whole cloud service from its service document.

    from components import CloudService, load_service

The provider's own resources come from its generated SDK (`pulumi_cloudservice`, in
sdk/python); the storage pool and the network a service lives in come from pulumi-libvirt.
"""

from .cloud_service import CloudService, load_service

__all__ = ["CloudService", "load_service"]
