"""Errors of the fabric.

    FabricError              root: the fabric could not bring a role where it was asked
     ├── GateFailed          an instance did not answer its health probe in time
     └── RolloutStopped      a change stopped part way; `.state` is what runs now

Host failures stay `virt.HypervisorError`s and image failures `vhd.VhdError`s: the fabric
lets them through unchanged, so callers catch each at the level they can act on.
"""

from __future__ import annotations

from typing import Any


class FabricError(Exception):
    """The fabric could not do what was asked; the message says what and where."""


class GateFailed(FabricError):
    """A health gate timed out; the message names the instance, the probe and its last answer."""


class RolloutStopped(FabricError):
    """A rollout or scale stopped part way. `state` is what is deployed now, so the caller can
    record it and the next run carries on from the truth."""

    def __init__(self, message: str, state: Any) -> None:
        super().__init__(message)
        self.state = state
