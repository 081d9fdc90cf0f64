"""`cloudservice:index:FrontDoor`: a service's load-balanced address per input endpoint.

The Pulumi side only: the front door itself (HAProxy, its configuration, reloads, the
rotation) is the fabric's (`fabric.ServiceFrontDoor`). It runs on the machine that runs the
provider. `read` reports a front door that is not running as gone, so `pulumi refresh` drops
it and the next `up` starts it again.
"""

from __future__ import annotations

from typing import Any

from .. import fabric
from ._base import Resource, combined, part


class FrontDoorArgs(fabric.ServiceFrontDoorSpec):
    """The front door's inputs: listeners and the instances behind them."""


class FrontDoorState(FrontDoorArgs, fabric.FrontDoorDeployment):
    """The inputs, and the front door as it runs: its URLs and rotation."""


class FrontDoor(Resource[FrontDoorArgs, FrontDoorState]):
    token = "cloudservice:index:FrontDoor"
    args_model = FrontDoorArgs
    state_model = FrontDoorState
    description = (
        "A service's front door: HAProxy with one listener per input endpoint, balancing over "
        "the role instances that answer their probe; rollouts drain and re-admit instances."
    )

    @classmethod
    def replace_properties(cls) -> set[str]:
        return {"name"}  # its directory, socket and processes are named after it

    def preview_id(self, args: FrontDoorArgs) -> str:
        return args.name

    def create(self, args: FrontDoorArgs) -> tuple[str, FrontDoorState]:
        return args.name, combined(FrontDoorState, args, fabric.ServiceFrontDoor(args).deploy())

    def read(self, resource_id: str, state: FrontDoorState) -> FrontDoorState | None:
        door = fabric.ServiceFrontDoor(state, state.directory)
        if not door.running():
            return None
        return combined(FrontDoorState, part(FrontDoorArgs, state), door.observe())

    def update(self, resource_id: str, old: FrontDoorState, new: FrontDoorArgs) -> FrontDoorState:
        return combined(FrontDoorState, new, fabric.ServiceFrontDoor(new, old.directory).deploy())

    def delete(self, resource_id: str, state: FrontDoorState) -> None:
        fabric.ServiceFrontDoor(state, state.directory).remove()

    def preview_update(self, old: FrontDoorState, new: FrontDoorArgs) -> dict[str, Any]:
        return {"directory": old.directory}
