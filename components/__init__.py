"""What a Pulumi program uses: the provider's resources as typed classes, and components.

from components import CloudService, Network, StoragePool, VmRole, Volume
"""

from .cloud_service import CloudService
from .resources import Network, StoragePool, VmRole, Volume

__all__ = ["CloudService", "Network", "StoragePool", "VmRole", "Volume"]
