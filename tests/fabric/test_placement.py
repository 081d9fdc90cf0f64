"""Update and fault domains, and the order an upgrade walks them."""

from __future__ import annotations

import pytest
from cloudservice.fabric import (
    Wave,
    fault_domain_indices,
    fault_domain_of,
    rollout_waves,
    update_domain_of,
)
from cloudservice.fabric._instances import RoleSpec
from cloudservice.model import UpgradeMode
from pydantic import ValidationError

PLACEMENTS = [(f"web-{i}", update_domain_of(i, 2)) for i in range(5)]  # 0,1,0,1,0


def test_instances_are_spread_round_robin() -> None:
    assert [domain for _, domain in PLACEMENTS] == [0, 1, 0, 1, 0]


def test_auto_walks_every_update_domain_in_order() -> None:
    assert rollout_waves(PLACEMENTS, UpgradeMode.AUTO) == [
        Wave((0,), ("web-0", "web-2", "web-4")),
        Wave((1,), ("web-1", "web-3")),
    ]


def test_simultaneous_is_one_wave() -> None:
    assert rollout_waves(PLACEMENTS, UpgradeMode.SIMULTANEOUS) == [
        Wave((0, 1), ("web-0", "web-2", "web-4", "web-1", "web-3"))
    ]


def test_manual_stops_after_the_configured_update_domain() -> None:
    assert rollout_waves(PLACEMENTS, UpgradeMode.MANUAL, manual_limit=0) == [
        Wave((0,), ("web-0", "web-2", "web-4"))
    ]
    assert rollout_waves(PLACEMENTS, UpgradeMode.MANUAL) == []


def test_nothing_to_move_is_no_wave() -> None:
    assert (
        rollout_waves([], UpgradeMode.AUTO) == []
        and rollout_waves([], UpgradeMode.SIMULTANEOUS) == []
    )


def test_fault_domains_fill_the_grid_independently_of_update_domains() -> None:
    # Two hosts, two update domains: four instances take every (fault, update) pair, and two
    # instances are on different hosts (a host lost keeps half the role).
    cells = {(fault_domain_of(i, 2, 2), update_domain_of(i, 2)) for i in range(4)}
    assert cells == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert fault_domain_of(0, 2, 2) != fault_domain_of(1, 2, 2)
    assert fault_domain_indices(5, 2, 2, 0) == [0, 3, 4]
    assert fault_domain_indices(5, 2, 2, 1) == [1, 2]
    assert fault_domain_indices(3, 5, 1, 0) == [0, 1, 2]  # one host: every instance


def test_a_fault_domain_resource_must_hold_instances() -> None:
    base = {"name": "cs-t-web", "pool": "p", "instance_count": 1, "update_domain_count": 2}
    with pytest.raises(ValidationError, match="fault domain 1 of 2 holds none of the role's 1"):
        RoleSpec.model_validate({**base, "fault_domain_count": 2, "fault_domain": 1})
    with pytest.raises(ValidationError, match="faultDomain 2 is not one of the 2 fault domains"):
        RoleSpec.model_validate({**base, "fault_domain_count": 2, "fault_domain": 2})
    spec = RoleSpec.model_validate({**base, "instance_count": 3, "fault_domain_count": 2})
    assert spec.instance_indexes() == [0]  # instances 1 and 2 are on fault domain 1
