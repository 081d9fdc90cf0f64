"""The provider's resources: one module per resource (Args, State, lifecycle)."""

from ._base import Model, wire_names
from .vm_role import VmRole, VmRoleArgs, VmRoleState

__all__ = ["Model", "VmRole", "VmRoleArgs", "VmRoleState", "wire_names"]
