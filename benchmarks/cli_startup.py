"""Start-up time of the ``cloudservice`` command (a script, not a timed test).

    .venv/bin/python benchmarks/cli_startup.py [--rounds 30] [--tree DIR]

Whole processes, spawn to exit, output thrown away:

1. ``python -c pass``: the bare interpreter of the virtualenv (the floor);
2. ``cloudservice --help``;
3. ``cloudservice vhd info DISK``, DISK a small dynamic VHD this script writes to a temporary
   directory (deleted at the end).

The three run once per round, in an order rotated each round (interleaved, so a busy spell
of a shared machine hits all three alike), after warm-up rounds that fill the page cache and
the bytecode caches. Printed: median and minimum of each, and the median's overhead above bare
Python; the goal is an overhead well under 100 ms.

Bytecode: an installed command runs from .pyc files, so the commands run with bytecode caching
on (PYTHONDONTWRITEBYTECODE unset) and the caches in the temporary directory
(PYTHONPYCACHEPREFIX), which leaves the checkout clean. ``--no-pyc`` times them compiling every
module of the checkout from source instead (bytecode writing off, as on our build machines).

``--tree DIR`` imports ``cloudservice`` from ``DIR/provider`` (put first on PYTHONPATH, ahead of
the editable install) to time another checkout, e.g. the tree before a change::

    git worktree add --detach /tmp/before COMMIT
    .venv/bin/python benchmarks/cli_startup.py --tree /tmp/before
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1024 * 1024
GOAL_MS = 100.0


def console_script() -> Path:
    """The ``cloudservice`` console script installed beside this interpreter."""
    script = Path(sys.executable).parent / "cloudservice"
    if not script.exists():
        raise SystemExit(f"{script} is missing: run `make setup` (pip install -e .)")
    return script


def make_disk(work: Path) -> Path:
    """A 64 MiB dynamic VHD with one allocated block."""
    from cloudservice.vhd import VhdWriter

    disk = work / "small.vhd"
    with VhdWriter(disk, 64 * MIB) as writer:
        writer.write_block(3, bytes(range(256)) * (2 * MIB // 256))
    return disk


def run_once(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawn to exit; the command must succeed."""
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr.decode()}")
    return seconds


def measure(
    commands: dict[str, list[str]], env: dict[str, str], rounds: int, warmup: int
) -> dict[str, list[float]]:
    names = list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(warmup + rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = run_once(commands[name], env)
            if index >= warmup:
                times[name].append(seconds)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    ap.add_argument("--tree", type=Path, help="time the cloudservice of this checkout instead")
    ap.add_argument("--no-pyc", action="store_true", help="no bytecode caches (compile source)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cli-startup-"))
    env = dict(os.environ)
    env.pop("PYTHONPYCACHEPREFIX", None)
    if args.no_pyc:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    if args.tree is not None:
        provider = args.tree.resolve() / "provider"
        if not (provider / "cloudservice" / "cli.py").exists():
            raise SystemExit(f"{provider}/cloudservice/cli.py not found")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(provider), env.get("PYTHONPATH")]))

    script = str(console_script())
    try:
        disk = make_disk(work)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "cloudservice --help": [script, "--help"],
            "cloudservice vhd info": [script, "vhd", "info", str(disk)],
        }
        times = measure(commands, env, args.rounds, args.warmup)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    where = args.tree or "the editable install"
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"cloudservice from {where}; bytecode caches {'off' if args.no_pyc else 'on'}")
    print(f"{args.rounds} interleaved rounds after {args.warmup} warm-up rounds, whole processes\n")
    floor = statistics.median(times["python -c pass"])
    print(f"  {'command':<24}{'median':>10}{'min':>10}{'above python':>15}")
    for name, samples in times.items():
        median = statistics.median(samples)
        above = "" if name.startswith("python") else f"{(median - floor) * 1000:+.1f} ms"
        print(f"  {name:<24}{median * 1000:>7.1f} ms{min(samples) * 1000:>7.1f} ms{above:>15}")
    worst = max(statistics.median(s) for s in times.values()) - floor
    verdict = "OK" if worst * 1000 < GOAL_MS else "OVER"
    print(f"\n  worst overhead {worst * 1000:.1f} ms (goal < {GOAL_MS:.0f} ms) -> {verdict}")


if __name__ == "__main__":
    main()
