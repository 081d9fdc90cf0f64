"""The provider's resources: one module per resource (Args, State, lifecycle)."""

from ._base import Model, wire_names
from .network import Network, NetworkArgs, NetworkState
from .storage_pool import StoragePool, StoragePoolArgs, StoragePoolState
from .vm_role import VmRole, VmRoleArgs, VmRoleState
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
    "VmRole",
    "VmRoleArgs",
    "VmRoleState",
    "wire_names",
]
