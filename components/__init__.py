"""What a Pulumi program uses: the provider's resources as typed classes, and components.

from components import StoragePool, Network, Volume
"""

from .resources import Network, StoragePool, Volume

__all__ = ["Network", "StoragePool", "Volume"]
