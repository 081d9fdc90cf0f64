"""Update and fault domains: where instances live, and the order an upgrade walks them.

As in Azure, instance i lives in update domain i mod N, and an upgrade touches one update
domain at a time, in order, so that at most 1/N of a role is down at once. Fault domains are
hosts: instance i lives on fault domain (i + i div N) mod F, so that the grid fills
independently of update domains (with N = F = 2, instances 0..3 take every pair), and each
host holds instances of every update domain once the role has enough of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..model import UpgradeMode


def update_domain_of(index: int, domain_count: int) -> int:
    return index % domain_count


def fault_domain_of(index: int, update_domain_count: int, fault_domain_count: int) -> int:
    return (index + index // update_domain_count) % fault_domain_count


def fault_domain_indices(
    instance_count: int, update_domain_count: int, fault_domain_count: int, fault_domain: int
) -> list[int]:
    """The role's instance indexes that live on fault domain `fault_domain`."""
    return [
        index
        for index in range(instance_count)
        if fault_domain_of(index, update_domain_count, fault_domain_count) == fault_domain
    ]


@dataclass(frozen=True)
class Wave:
    """Instances upgraded together, behind one health gate."""

    update_domains: tuple[int, ...]
    instances: tuple[str, ...]


def rollout_waves(
    placements: Iterable[tuple[str, int]],
    mode: UpgradeMode,
    manual_limit: int | None = None,
) -> list[Wave]:
    """The waves of an upgrade, in order.

    `auto` walks every update domain in turn; `simultaneous` does all at once; `manual` walks
    them in turn but stops after update domain `manual_limit` (none when it is None).
    """
    by_domain: dict[int, list[str]] = {}
    for name, domain in placements:
        by_domain.setdefault(domain, []).append(name)
    domains = sorted(by_domain)
    if mode == UpgradeMode.MANUAL:
        domains = [d for d in domains if manual_limit is not None and d <= manual_limit]
    waves = [Wave((d,), tuple(by_domain[d])) for d in domains]
    if mode == UpgradeMode.SIMULTANEOUS and waves:
        return [Wave(tuple(domains), tuple(n for w in waves for n in w.instances))]
    return waves
