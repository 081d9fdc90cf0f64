"""Parallel resources: `pulumi up` of two independent VM roles against one role alone.

Pulumi creates independent resources in parallel; a provider that blocks its event loop runs
them one after another. Whole `pulumi up` processes (real CLI, real libvirtd, TCG guests) of
`tests/e2e/programs/two_roles` with one role and with two, each followed by a destroy, in
interleaved rounds; medians. With `--before CHECKOUT` (another clone with its own `make setup`)
the same runs use that clone's provider too, paired round by round with this one's.

    .venv/bin/python benchmarks/parallel_roles.py [--rounds 3] [--before ../other-clone]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulumi import automation as auto  # noqa: E402

from tests.e2e.project import REPO, make_project, make_stack  # noqa: E402


def timed_up(checkout: Path, roles: int, work: Path) -> float:
    project = make_project(work / "project", program="two_roles", checkout=checkout)
    stack = make_stack(project, work / "state", prefix="bench")
    stack.set_config("roleCount", auto.ConfigValue(str(roles)))
    try:
        start = time.monotonic()
        stack.up()
        return time.monotonic() - start
    finally:
        stack.destroy()
        stack.workspace.remove_stack(stack.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    args = parser.parse_args()
    checkouts = {"this": REPO}
    if args.before:
        checkouts["before"] = args.before.resolve()
    times: dict[tuple[str, int], list[float]] = {}
    for round_ in range(args.rounds):
        order = list(checkouts.items())
        if round_ % 2:
            order.reverse()  # neither checkout always runs first
        for label, checkout in order:
            for roles in (1, 2):
                with tempfile.TemporaryDirectory() as work:
                    seconds = timed_up(checkout, roles, Path(work))
                times.setdefault((label, roles), []).append(seconds)
                print(f"round {round_ + 1}: {label} {roles} role(s): {seconds:.1f} s", flush=True)
    print("\nmedian `pulumi up` wall time (s)")
    print(f"{'provider':<10}{'1 role':>10}{'2 roles':>10}{'2 / 1':>8}")
    for label in checkouts:
        one = statistics.median(times[(label, 1)])
        two = statistics.median(times[(label, 2)])
        print(f"{label:<10}{one:>10.1f}{two:>10.1f}{two / one:>8.2f}")


if __name__ == "__main__":
    main()
