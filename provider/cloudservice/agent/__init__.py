"""The guest agent of Web and Worker role instances (docs/guest.md).

It runs as PID 1 inside the guest OS image: reads the configuration medium, checks and unpacks
the role's package from the package disk, runs the startup tasks and the entry point, and
reports on the status channel. In the guest it is installed as the top-level package
``cloudservice_agent`` and started with ``python3 -m cloudservice_agent``, so it uses the
standard library only and relative imports only (tests/test_layering.py checks both).

Every path can be overridden, so the agent also runs unprivileged on a host::

    python -m cloudservice.agent --config-device F --package-device F --status-channel F \\
        --console F --root DIR --no-user-switch
"""

from ._agent import Agent, Options, main, parse_args
from ._role import Timing
from ._unpack import unpack_package, verify_digest
from .errors import AgentError, ConfigurationInvalid, DigestMismatch, PackageRejected, RoleFailed

__all__ = [
    "Agent",
    "AgentError",
    "ConfigurationInvalid",
    "DigestMismatch",
    "Options",
    "PackageRejected",
    "RoleFailed",
    "Timing",
    "main",
    "parse_args",
    "unpack_package",
    "verify_digest",
]
