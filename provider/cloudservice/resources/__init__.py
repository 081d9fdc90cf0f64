"""The provider's resources: one module per resource (Args, State, lifecycle)."""

from ._base import Model
from .network import Network, NetworkArgs, NetworkState
from .storage_pool import StoragePool, StoragePoolArgs, StoragePoolState
from .volume import Volume, VolumeArgs, VolumeState

__all__ = [
    "Model",
    "Network",
    "NetworkArgs",
    "NetworkState",
    "StoragePool",
    "StoragePoolArgs",
    "StoragePoolState",
    "Volume",
    "VolumeArgs",
    "VolumeState",
]
