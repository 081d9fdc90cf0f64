"""Update domains and the order an upgrade walks them."""

from __future__ import annotations

from cloudservice.fabric import Wave, rollout_waves, update_domain_of
from cloudservice.model import UpgradeMode

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
