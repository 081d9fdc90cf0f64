"""Update domains and the order an upgrade walks them."""

from __future__ import annotations

from cloudservice.virt._rollout import Wave, rollout_waves, update_domain_of

PLACEMENTS = [(f"web-{i}", update_domain_of(i, 2)) for i in range(5)]  # 0,1,0,1,0


def test_instances_are_spread_round_robin() -> None:
    assert [domain for _, domain in PLACEMENTS] == [0, 1, 0, 1, 0]


def test_auto_walks_every_update_domain_in_order() -> None:
    assert rollout_waves(PLACEMENTS, "auto") == [
        Wave((0,), ("web-0", "web-2", "web-4")),
        Wave((1,), ("web-1", "web-3")),
    ]


def test_simultaneous_is_one_wave() -> None:
    assert rollout_waves(PLACEMENTS, "simultaneous") == [
        Wave((0, 1), ("web-0", "web-2", "web-4", "web-1", "web-3"))
    ]


def test_manual_stops_after_the_configured_update_domain() -> None:
    assert rollout_waves(PLACEMENTS, "manual", manual_limit=0) == [
        Wave((0,), ("web-0", "web-2", "web-4"))
    ]
    assert rollout_waves(PLACEMENTS, "manual") == []


def test_nothing_to_move_is_no_wave() -> None:
    assert rollout_waves([], "auto") == [] and rollout_waves([], "simultaneous") == []
