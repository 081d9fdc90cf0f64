"""The fabric: what Azure's fabric controller does for any role kind, on libvirt hosts.

It places instances in update domains, starts and reimages them, rolls a change out update
domain by update domain behind health gates, stops where a gate fails and reports how far it
got, and scales. The VM role's image chain lives in `_layers`. Never imports pulumi: the
provider's resources are thin handlers over this package.

    model, vhd, virt  ->  fabric  ->  resources  ->  components
"""

from ._guest import AgentStatus, read_status
from ._health import Probe, ProbeAnswer, free_loopback_port, probe_once, wait_healthy
from ._instances import Endpoint, Instance, InstanceTemplate, ServiceNetwork, instance_address
from ._layers import Layer
from ._placement import (
    Wave,
    fault_domain_indices,
    fault_domain_of,
    rollout_waves,
    update_domain_of,
)
from ._rollout import HealthGate, Progress, roll, scale
from ._scans import Scan, scan_release
from .errors import FabricError, GateFailed, RolloutStopped
from .front_door import (
    BackendServer,
    FrontDoorDeployment,
    FrontDoorListener,
    RotationEntry,
    ServiceFrontDoor,
    ServiceFrontDoorSpec,
)
from .package_role import (
    LocalStorage,
    PackageRole,
    PackageRoleDeployment,
    PackageRoleSpec,
    RoleCertificate,
    StartupTask,
)
from .vm_role import VmRole, VmRoleDeployment, VmRoleSpec

__all__ = [
    "RoleCertificate",
    "BackendServer",
    "FrontDoorDeployment",
    "FrontDoorListener",
    "RotationEntry",
    "ServiceFrontDoor",
    "ServiceFrontDoorSpec",
    "AgentStatus",
    "LocalStorage",
    "PackageRole",
    "PackageRoleDeployment",
    "PackageRoleSpec",
    "Placement",
    "ServiceNetwork",
    "StartupTask",
    "instance_address",
    "read_status",
    "Endpoint",
    "FabricError",
    "GateFailed",
    "HealthGate",
    "Instance",
    "InstanceTemplate",
    "Layer",
    "Probe",
    "ProbeAnswer",
    "Progress",
    "RolloutStopped",
    "VmRole",
    "VmRoleDeployment",
    "VmRoleSpec",
    "Wave",
    "Scan",
    "scan_release",
    "free_loopback_port",
    "probe_once",
    "roll",
    "rollout_waves",
    "scale",
    "update_domain_of",
    "fault_domain_indices",
    "fault_domain_of",
    "wait_healthy",
]
