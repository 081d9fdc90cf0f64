"""The service model: definitions, configurations, role packages, Azure import, update rules.

Pure Python over pydantic v2: never imports pulumi or libvirt, so the provider, components
and the ``cloudservice`` command can all use it. See docs/model.md for the document format.
"""

from ._configuration import (
    MASK,
    CertificateReference,
    RoleConfiguration,
    ServiceConfiguration,
    SettingValue,
    UpgradeMode,
    reveal,
)
from ._definition import (
    CertificateDefinition,
    EntryPoint,
    EnvironmentVariable,
    ExecutionContext,
    InputEndpoint,
    InternalEndpoint,
    LoadBalancerProbe,
    LocalStorage,
    RoleDefinition,
    RoleKind,
    ServiceDefinition,
    SettingDefinition,
    StartupTask,
    TaskType,
)
from ._spec import API_VERSION, RoleArtifacts, ServiceSpec, dump_spec, load_spec
from ._validate import Sources, check_service, validate_service
from ._vmsizes import VM_SIZES, LibvirtResources, VmSize, lookup_vm_size
from .errors import (
    AzureFormatError,
    ModelError,
    PackageCorrupt,
    PackageError,
    PackageTooLarge,
    Problem,
    UnknownVmSize,
    UnsafePackageEntry,
    ValidationProblems,
)

__all__ = [
    "API_VERSION",
    "MASK",
    "VM_SIZES",
    "AzureFormatError",
    "CertificateDefinition",
    "CertificateReference",
    "EntryPoint",
    "EnvironmentVariable",
    "ExecutionContext",
    "InputEndpoint",
    "InternalEndpoint",
    "LibvirtResources",
    "LoadBalancerProbe",
    "LocalStorage",
    "ModelError",
    "PackageCorrupt",
    "PackageError",
    "PackageTooLarge",
    "Problem",
    "RoleArtifacts",
    "RoleConfiguration",
    "RoleDefinition",
    "RoleKind",
    "ServiceConfiguration",
    "ServiceDefinition",
    "ServiceSpec",
    "SettingDefinition",
    "SettingValue",
    "Sources",
    "StartupTask",
    "TaskType",
    "UnknownVmSize",
    "UnsafePackageEntry",
    "UpgradeMode",
    "ValidationProblems",
    "VmSize",
    "check_service",
    "dump_spec",
    "load_spec",
    "lookup_vm_size",
    "reveal",
    "validate_service",
]
