"""Errors of the guest agent.

    AgentError                      root: something the agent reports as state ``failed``
    ├── ConfigurationInvalid        the configuration document cannot be used
    ├── PackageRejected             the package disk does not hold a package the agent runs
    │   └── DigestMismatch          its bytes do not match ``package.sha256``
    └── RoleFailed                  a startup task failed, or the role cannot be started

The message of each is what the status channel carries as ``detail``: it says what is wrong
and never carries a setting's value.
"""

from __future__ import annotations

__all__ = ["AgentError", "ConfigurationInvalid", "DigestMismatch", "PackageRejected", "RoleFailed"]


class AgentError(Exception):
    """Root of the agent's errors; reported as state ``failed`` with the message as detail."""


class ConfigurationInvalid(AgentError):
    """The configuration document is not one the agent can run; the fabric must write a new
    generation."""


class PackageRejected(AgentError):
    """The package is unsafe or unreadable; rebuild it with ``cloudservice package build``."""


class DigestMismatch(PackageRejected):
    """The package disk's bytes do not match the configuration's ``package.sha256``."""


class RoleFailed(AgentError):
    """A simple startup task exited non-zero, or a role process could not be started."""
