"""The fabric driver: libvirt hosts, their pools, volumes, networks and domains.

Never imports pulumi. XML is built only in `xml.py`; libvirt errors are mapped to `errors`.
"""

from ._accel import AcceleratorReport, detect_accelerator, probe_kvm
from ._host import DEFAULT_URI, DomainInfo, Host, NetworkInfo, PoolInfo, VolumeInfo
from ._specs import (
    AttachedDisk,
    DomainSpec,
    NetworkInterface,
    NetworkSpec,
    PoolSpec,
    PortForward,
    VolumeSpec,
)
from .errors import (
    DomainNotFound,
    HostUnavailable,
    HypervisorError,
    ObjectExists,
    ObjectNotFound,
    OperationFailed,
)

__all__ = [
    "DEFAULT_URI",
    "AcceleratorReport",
    "AttachedDisk",
    "DomainInfo",
    "DomainNotFound",
    "DomainSpec",
    "Host",
    "HostUnavailable",
    "HypervisorError",
    "NetworkInfo",
    "NetworkInterface",
    "NetworkSpec",
    "ObjectExists",
    "ObjectNotFound",
    "OperationFailed",
    "PoolInfo",
    "PoolSpec",
    "PortForward",
    "VolumeInfo",
    "VolumeSpec",
    "detect_accelerator",
    "probe_kvm",
]
