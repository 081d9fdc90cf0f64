"""The front door: HAProxy balancing a service's endpoints over its role instances.

Never imports pulumi. haproxy.cfg is built only in `config.py`; HAProxy's runtime API is
spoken only in `_runtime.py`; every failure is a `FrontDoorError`.
"""

from ._frontdoor import AdminState, FrontDoor, OperationalState, ServerStatus
from ._specs import FrontDoorSpec, HealthCheck, Listener, Server
from .errors import FrontDoorError

__all__ = [
    "AdminState",
    "FrontDoor",
    "FrontDoorError",
    "FrontDoorSpec",
    "HealthCheck",
    "Listener",
    "OperationalState",
    "Server",
    "ServerStatus",
]
