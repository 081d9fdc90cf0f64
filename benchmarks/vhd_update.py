"""VHD updates that move only what changed, against qemu (issue #12; a script, not a test).

    .venv/bin/python benchmarks/vhd_update.py [--rounds 5] [--size-mib 256] [--big-mib 1024]
        [--workdir /var/tmp] [--uri qemu:///system] [--json]

Images: OLD, a dense image (SHAKE-128 bytes, so every 2 MiB block is allocated), and NEW, a
copy with pages overwritten by other SHAKE bytes, both made dynamic VHDs with
``qemu-img convert -O vpc -o subformat=dynamic`` from raw files. Four cases:

1. a --size-mib image, ONE changed 4 KiB page (somewhere at random);
2. the same OLD, 48 changed pages, each in its own 2 MiB block, spread evenly over the disk;
3. a --big-mib image, about 2% changed in runs of 64 KiB to 1 MiB (4 KiB aligned offsets and
   lengths, seeded random, not overlapping);
4. the --big-mib OLD and an identical copy of its file.

Per case, five whole processes (spawn to exit, start-up included), timed in the same run,
paired and repeated: one unmeasured warm-up round (page cache, bytecode: compiled modules are
kept, as on a user's machine, even when this shell says PYTHONDONTWRITEBYTECODE), then
--rounds rounds in which the order of the five is rotated; medians are reported, with every
run.

a. ``cloudservice vhd diff OLD NEW -o layer-a.qcow2 --json`` (two images at hand, like qemu)
b. ``cloudservice vhd diff old.json NEW -o layer-b.qcow2 --parent-path OLD --json``: against
   OLD's page manifest (made once, beforehand, by ``cloudservice vhd manifest``): what
   ``pulumi up`` computes, digesting every page of NEW;
c. ``qemu-img compare OLD NEW`` (exit 0 identical, 1 differ; it stops at the first
   difference, so its time depends on where that is: the offset is printed);
d. ``sh -c 'qemu-img create -f qcow2 -b NEW -F vpc ov.qcow2 && qemu-img rebase -b OLD -F vpc
   ov.qcow2'``: qemu building an overlay over OLD that reads as NEW;
e. ``cloudservice vhd diff old.json CHILD -o layer-e.qcow2 --parent-path OLD --json``, CHILD
   being the update shipped as a differencing VHD of OLD (made beforehand, untimed, by
   ``cloudservice vhd diff OLD NEW -o child.vhd``): only the pages CHILD stores are read.

The goal "faster than qemu" compares a, b and e with qemu's like-for-like: ``compare`` when
the images are identical (the only case where it reads everything), ``rebase`` otherwise.

Checked afterwards: our layers and qemu's overlay read as NEW (``qemu-img compare``).
Sizes: apparent (st_size) and allocated (st_blocks * 512) of each; ``upload_bytes`` of ours
(what a sparse upload sends). Peak memory: ``ru_maxrss`` of each child (``os.wait4``), the
largest over the rounds. The commands are spawned, and timed, by a small runner process, not
by this script: a child's ``ru_maxrss`` starts at its spawner's peak RSS, and the runner's
(what ``true`` reports through it) is printed as the floor.

Then the provider's own path, on a real libvirtd (a pool under
/var/lib/cloudservice/pools, deleted at the end): ``ImageChain.release`` of OLD (the whole
base, once per OLD), then, in a fresh process with a cold ``CLOUDSERVICE_CACHE``, the flow of
an ``up`` to NEW: ``scan_release(NEW)`` (the check), again (an up checks twice),
``chain.preview`` and ``chain.release``, each given a ``scan_release`` of its own as the VM
role does. Reported: ``Host.bytes_uploaded`` of the release (the layer and its record,
counted at the libvirt stream), beside the bound of the issue, 1.25 x (changed pages x 4096)
+ 64 KiB, and beside a whole re-upload of NEW (``Host.upload_volume`` non-sparse, as
pulumi-libvirt would); the layer on the host must read as NEW (``qemu-img compare``); and the
bytes that process read from NEW itself (the process runs under ``strace -y``, which names
each read's file) over NEW's file size (goal: about 1, the image read once per up; met at
<= 1.10), beside ``rchar`` of /proc/self/io per step. rchar counts every read: NEW's, but
also the scan cache entry, the base's record fetched from the host (the cache is cold) and
its cached copy, and the layer the flow writes to a temporary file and reads back (to size it
and stream it). Each case's layer is deleted before the next; the base stays for the cases
of its OLD.

Every goal is printed with whether it is met; ``--json`` prints one JSON document instead
(progress goes to stderr). Files go to a temporary directory under --workdir, deleted at the
end. The machine is shared: develop with small sizes (``--size-mib 64 --big-mib 64``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cloudservice.fabric import scan_release
from cloudservice.fabric._layers import ImageChain, Layer
from cloudservice.virt import Host, PoolSpec, VolumeSpec

MIB = 1024 * 1024
PAGE = 4096
BLOCK = 2 * MIB
SPREAD_PAGES = 48
RUN_FRACTION = 0.02
MEMORY_GOAL = 256 * MIB
READS_GOAL = 1.10  # "about 1.0": the image once, plus the manifests the flow reads and fetches
MAX_DEPTH = 4
POOLS = Path("/var/lib/cloudservice/pools")
COMMANDS = {
    "a": "cloudservice vhd diff OLD NEW",
    "b": "cloudservice vhd diff old.json NEW",
    "c": "qemu-img compare OLD NEW",
    "d": "qemu-img create + rebase",
    "e": "cloudservice vhd diff old.json CHILD",
}

# The provider's flow for one release, in a fresh interpreter: its rchar counts only what the
# flow reads (the modules the flow loads lazily are imported first).
_UPDATE_CHILD = """
import json, sys, time
import cloudservice.vhd._diff, cloudservice.vhd._manifest, cloudservice.vhd._qcow2_writer
from cloudservice.fabric import scan_release
from cloudservice.fabric._layers import ImageChain, Layer
from cloudservice.virt import Host

def rchar():
    with open("/proc/self/io") as io:
        return int(next(line for line in io if line.startswith("rchar:")).split()[1])

uri, pool, role, image = sys.argv[1:5]
layers = [Layer.model_validate(x) for x in json.loads(sys.argv[5])]
with Host(uri) as host:
    chain = ImageChain(host, pool, role)
    steps, mark = [], [rchar(), time.perf_counter()]
    def step(name):
        now, t = rchar(), time.perf_counter()
        steps.append({"step": name, "rchar": now - mark[0], "seconds": t - mark[1]})
        mark[:] = [rchar(), time.perf_counter()]
    scan_release(image)
    step("check: scan_release")
    scan_release(image)
    step("check again: scan_release")
    preview = chain.preview(scan_release(image), image, layers, int(sys.argv[6]))
    step("preview: scan_release + chain.preview")
    before = (host.bytes_uploaded, host.hole_bytes_uploaded)
    layer, _ = chain.release(scan_release(image), image, layers, int(sys.argv[6]))
    step("release: scan_release + chain.release")
    print(json.dumps({
        "steps": steps,
        "preview": preview,
        "layer": layer.wire(),
        "streamed": host.bytes_uploaded - before[0],
        "hole_bytes": host.hole_bytes_uploaded - before[1],
    }))
"""


@dataclass
class Case:
    key: str
    title: str
    old: Path
    new: Path
    changes: list[tuple[int, int]]  # (offset, length) of the changed bytes, page aligned

    @property
    def pages(self) -> int:
        return sum(length for _offset, length in self.changes) // PAGE


@dataclass
class Run:
    seconds: float
    maxrss: int
    exit: int
    stdout: str


@dataclass
class Goal:
    goal: str
    met: bool
    detail: str


@dataclass
class Result:
    case: str
    title: str
    virtual_size: int = 0
    old_file_size: int = 0
    new_file_size: int = 0
    changed_pages: int = 0
    first_change_offset: int | None = None
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    libvirt: dict[str, Any] = field(default_factory=dict)
    reads: dict[str, Any] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)


# -- images ---------------------------------------------------------------------------------


def dense_bytes(seed: str, offset: int, length: int) -> bytes:
    """SHAKE-128 bytes named by (seed, offset): incompressible, never a zero page."""
    return hashlib.shake_128(f"{seed}:{offset}".encode()).digest(length)


def write_dense(path: Path, size: int, seed: str) -> None:
    chunk = 4 * MIB
    with open(path, "wb") as out:
        for offset in range(0, size, chunk):
            out.write(dense_bytes(seed, offset, min(chunk, size - offset)))


def to_vhd(raw: Path, vhd: Path) -> None:
    """A dynamic VHD of ``raw`` (qemu's), then the raw file goes."""
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic",
         str(raw), str(vhd)],
        check=True,
    )  # fmt: skip
    raw.unlink()


def make_new(old_raw: Path, vhd: Path, changes: Sequence[tuple[int, int]], seed: str) -> None:
    """NEW: a copy of OLD's raw file with ``changes`` overwritten, as a dynamic VHD."""
    raw = vhd.with_suffix(".raw")
    shutil.copyfile(old_raw, raw)
    fd = os.open(raw, os.O_WRONLY)
    try:
        for offset, length in changes:
            os.pwrite(fd, dense_bytes(seed, offset, length), offset)
    finally:
        os.close(fd)
    to_vhd(raw, vhd)


def one_page(size: int, rng: random.Random) -> list[tuple[int, int]]:
    return [(rng.randrange(size // PAGE) * PAGE, PAGE)]


def spread_pages(size: int, rng: random.Random) -> list[tuple[int, int]]:
    """One page in each of up to SPREAD_PAGES blocks, the blocks evenly spaced over the disk."""
    blocks = size // BLOCK
    count = min(SPREAD_PAGES, blocks)
    picks = [(2 * i + 1) * blocks // (2 * count) for i in range(count)]
    return [(block * BLOCK + rng.randrange(BLOCK // PAGE) * PAGE, PAGE) for block in picks]


def runs_of_change(size: int, rng: random.Random) -> list[tuple[int, int]]:
    """Runs of 64 KiB to 1 MiB at random page-aligned offsets, apart, until RUN_FRACTION."""
    runs: list[tuple[int, int]] = []
    total = 0
    while total < size * RUN_FRACTION:
        length = rng.randint(16, 256) * PAGE
        offset = rng.randrange((size - length) // PAGE + 1) * PAGE
        if any(offset < o + n and o < offset + length for o, n in runs):
            continue
        runs.append((offset, length))
        total += length
    return sorted(runs)


# -- processes ------------------------------------------------------------------------------


class Runner:
    """A small process that spawns the measured commands: wait4 gives each one's peak RSS.

    Not this script: a child's ``ru_maxrss`` starts at the peak RSS of the process that
    spawned it (exec records the old address space's high-water mark, and posix_spawn's vfork
    shares the parent's), and this script holds images' manifests. The floor: what ``true``
    reports (the runner's own peak). Wall time is measured in the runner, spawn to exit.
    """

    _CODE = """
import json, os, sys, time
for line in sys.stdin:
    argv, out = json.loads(line)
    with open(out, "wb") as stdout, open(out + ".err", "wb") as stderr:
        dup = [(os.POSIX_SPAWN_DUP2, stdout.fileno(), 1), (os.POSIX_SPAWN_DUP2, stderr.fileno(), 2)]
        start = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=dup)
        _pid, status, usage = os.wait4(pid, 0)
        seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    print(json.dumps([seconds, usage.ru_maxrss * 1024, code]), flush=True)
"""

    def __init__(self, work: Path) -> None:
        # As a user runs them: Python keeps compiled modules (a CI shell may say otherwise),
        # written by each case's warm-up round.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self._proc = subprocess.Popen(
            [sys.executable, "-S", "-c", self._CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.floor = self.run(["true"], work / "true.out").maxrss

    def _line(self) -> str:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise SystemExit("the runner process died")
        return line

    def run(self, argv: Sequence[str], out: Path, ok: Sequence[int] = (0,)) -> Run:
        """Run a whole process, stdout to ``out`` (stderr to ``out``.err); its exit must be
        one of ``ok``."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps([list(argv), str(out)]) + "\n")
        self._proc.stdin.flush()
        seconds, maxrss, code = json.loads(self._line())
        if code not in ok:
            err = Path(f"{out}.err").read_text()
            raise SystemExit(f"{' '.join(map(str, argv))} exited {code}:\n{err}")
        return Run(seconds, maxrss, code, out.read_text())

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait()


def identical(image: Path, new: Path, fmt: str | None = None) -> bool:
    argv = ["qemu-img", "compare", *(["-f", fmt] if fmt else []), "-F", "vpc", str(image), str(new)]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def sizes(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"apparent": st.st_size, "allocated": st.st_blocks * 512}


def console_script() -> Path:
    script = Path(sys.executable).parent / "cloudservice"
    if not script.exists():
        raise SystemExit(f"{script} is missing: run `make setup` (pip install -e .)")
    return script


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- measuring ------------------------------------------------------------------------------


def time_commands(
    runner: Runner, case: Case, old_json: Path, work: Path, rounds: int, result: Result
) -> None:
    cli = str(console_script())
    old, new = str(case.old), str(case.new)
    overlay = work / "ov.qcow2"
    # The update as a differencing disk (how VM role updates ship): made once, untimed.
    child = work / "child.vhd"
    child.unlink(missing_ok=True)
    runner.run([cli, "vhd", "diff", old, new, "-o", str(child)], work / "child.out")
    argvs = {
        "a": [cli, "vhd", "diff", old, new, "-o", str(work / "layer-a.qcow2"), "--json"],
        "b": [cli, "vhd", "diff", str(old_json), new, "-o", str(work / "layer-b.qcow2"),
              "--parent-path", old, "--json"],
        "c": ["qemu-img", "compare", old, new],
        "d": ["sh", "-c",
              'qemu-img create -f qcow2 -b "$1" -F vpc "$3" && qemu-img rebase -b "$2" -F vpc "$3"',
              "sh", new, old, str(overlay)],
        "e": [cli, "vhd", "diff", str(old_json), str(child), "-o", str(work / "layer-e.qcow2"),
              "--parent-path", old, "--json"],
    }  # fmt: skip
    names = list(argvs)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for index in range(rounds + 1):  # round 0 warms up, unmeasured
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            if name == "d":
                overlay.unlink(missing_ok=True)  # qemu starts from no overlay each time
            ok = (0, 1) if name == "c" else (0,)
            run = runner.run(argvs[name], work / f"{name}.out", ok)
            if index:
                runs[name].append(run)
    for name in names:
        seconds = [run.seconds for run in runs[name]]
        result.timings[name] = {
            "command": COMMANDS[name],
            "median_seconds": statistics.median(seconds),
            "runs_seconds": seconds,
            "max_rss": max(run.maxrss for run in runs[name]),
            "exit": runs[name][-1].exit,
        }
    for name in ("a", "b", "e"):
        doc = json.loads(runs[name][-1].stdout)
        layer = Path(doc["output"])
        result.sizes[f"layer_{name}"] = {
            **sizes(layer),
            "upload_bytes": doc["upload_bytes"],
            "file_size": doc["file_size"],
            "bytes_changed": doc["bytes_changed"],
            "blocks_changed": doc["blocks_changed"],
            "reads_as_new": identical(layer, case.new, "qcow2"),
        }
    result.sizes["qemu_overlay"] = {
        **sizes(overlay),
        "reads_as_new": identical(overlay, case.new, "qcow2"),
    }


def provider_update(
    runner: Runner,
    host: Host,
    chain: ImageChain,
    base: Layer,
    case: Case,
    work: Path,
    result: Result,
) -> None:
    """The release of NEW over ``base`` in a fresh process (cold cache), then a whole
    re-upload of NEW for comparison; the layer is deleted afterwards."""
    cache = work / f"cache-{case.key}"
    argv = [
        sys.executable, "-c", _UPDATE_CHILD, host.uri, chain.pool, chain.role, str(case.new),
        json.dumps([base.wire()]), str(MAX_DEPTH),
    ]  # fmt: skip
    trace = work / "update.strace"
    # strace names each read's file (-y): the bytes read from NEW itself, whatever reads them.
    traced = ["strace", "-f", "-qq", "-y", "-e", "trace=read,pread64,readv,preadv,preadv2"]
    run = runner.run(
        ["env", f"CLOUDSERVICE_CACHE={cache}", *traced, "-o", str(trace), *argv],
        work / "update.out",
    )
    doc = json.loads(run.stdout)
    image_bytes = bytes_read_from(trace, case.new)
    trace.unlink()
    shutil.rmtree(cache, ignore_errors=True)
    layer = Layer.model_validate(doc["layer"])
    fresh = layer.volume != base.volume
    streamed = doc["streamed"]
    whole_volume = f"{chain.role}-whole-{case.key}.vhd"
    before = host.bytes_uploaded
    host.upload_volume(
        chain.pool,
        VolumeSpec(name=whole_volume, capacity=case.new.stat().st_size, format="vpc"),
        case.new,
    )
    whole = host.bytes_uploaded - before
    host.delete_volume(chain.pool, whole_volume)
    result.libvirt = {
        "layer_volume": layer.volume,
        "layer_format": layer.format,
        "new_layer": fresh,
        "streamed": streamed,
        "layer_bytes": layer.uploaded_bytes if fresh else 0,
        "record_bytes": streamed - layer.uploaded_bytes if fresh else 0,
        "hole_bytes": doc["hole_bytes"],
        "bound": bound(case.pages),
        "whole_reupload": whole,
        "layer_reads_as_new": identical(Path(layer.path), case.new, layer.format),
        "preview": doc["preview"],
    }
    if fresh:
        chain.delete(layer.volume)
    total = sum(s["rchar"] for s in doc["steps"])
    result.reads = {
        "image_bytes": image_bytes,
        "image_ratio": image_bytes / result.new_file_size,
        "rchar": total,
        "new_file_size": result.new_file_size,
        "ratio": total / result.new_file_size,
        "steps": [{**s, "ratio": s["rchar"] / result.new_file_size} for s in doc["steps"]],
        "max_rss": run.maxrss,
        "seconds": run.seconds,
    }


def bytes_read_from(trace: Path, image: Path) -> int:
    """The bytes the traced reads returned from ``image`` (strace -y names each fd's file)."""
    name = f"<{os.path.realpath(image)}>"
    total = 0
    for line in trace.read_text(errors="replace").splitlines():
        if name in line and (result := line.rsplit("= ", 1)[-1].split()[0]).isdigit():
            total += int(result)
    return total


def bound(pages: int) -> int:
    """Issue #12: what an update of ``pages`` changed pages may stream."""
    return int(1.25 * pages * PAGE) + 65536


def judge(result: Result) -> None:
    t = {name: result.timings[name]["median_seconds"] for name in result.timings}
    lv = result.libvirt
    ours = [result.sizes["layer_a"], result.sizes["layer_b"], result.sizes["layer_e"]]
    qemu = result.sizes["qemu_overlay"]
    rss = {name: result.timings[name]["max_rss"] for name in ("a", "b", "e")}
    correct = [*(x["reads_as_new"] for x in ours), qemu["reads_as_new"]]
    # qemu's like-for-like: `compare` reads everything only when the images are identical
    # (it stops at the first difference); building an overlay of a change is `rebase`.
    rival = "c" if not result.changed_pages else "d"
    found = ours[1]["bytes_changed"] // PAGE
    goals = [
        Goal(
            "layers read as NEW",
            all(correct) and lv["layer_reads_as_new"],
            f"layer a {correct[0]}, layer b {correct[1]}, layer e {correct[2]},"
            f" qemu overlay {correct[3]},"
            f" {lv['layer_volume']} on the host {lv['layer_reads_as_new']}",
        ),
        Goal(
            "pages found == pages changed",
            found == result.changed_pages and len({x["bytes_changed"] for x in ours}) == 1,
            f"{found} found, {result.changed_pages} changed",
        ),
        Goal(
            "qemu-img compare agrees (exit 1: differ, 0: identical)",
            result.timings["c"]["exit"] == (1 if result.changed_pages else 0),
            f"exit {result.timings['c']['exit']}",
        ),
        Goal(
            "bytes streamed <= bound",
            lv["streamed"] <= lv["bound"],
            f"{lv['streamed']:,} <= {lv['bound']:,}",
        ),
        Goal(
            "bytes streamed <= whole re-upload",
            lv["streamed"] <= lv["whole_reupload"],
            f"{lv['streamed']:,} <= {lv['whole_reupload']:,}",
        ),
        *(
            Goal(
                f"{name} faster than qemu-img {'compare' if rival == 'c' else 'rebase'} (medians)",
                t[name] < t[rival],
                f"{name} {t[name]:.3f} s; {rival} {t[rival]:.3f} s",
            )
            for name in ("a", "b", "e")
        ),
        Goal(
            "our layer allocated <= qemu overlay allocated",
            max(x["allocated"] for x in ours) <= qemu["allocated"],
            f"{max(x['allocated'] for x in ours):,} <= {qemu['allocated']:,}",
        ),
        Goal(
            "peak memory of a, b and e < 256 MiB",
            max(rss.values()) < MEMORY_GOAL,
            ", ".join(f"{name} {rss[name] / MIB:.0f} MiB" for name in rss),
        ),
        Goal(
            f"image reads per up about 1 (<= {READS_GOAL})",
            result.reads["image_ratio"] <= READS_GOAL,
            f"{result.reads['image_ratio']:.3f} x NEW's file size read from NEW (strace)",
        ),
    ]
    result.goals = goals


# -- the cases --------------------------------------------------------------------------------


def run_group(
    runner: Runner,
    work: Path,
    host: Host,
    pool: str,
    role: str,
    size: int,
    specs: Sequence[tuple[str, str, Any]],
    rounds: int,
    report: bool,
    number: int,
) -> list[Result]:
    """One OLD image and the cases over it."""
    old_raw, old = work / f"{role}-old.raw", work / f"{role}-old.vhd"
    start = time.perf_counter()
    write_dense(old_raw, size, role)
    news: list[Case] = []
    for key, title, pick in specs:
        rng = random.Random(f"{role}:{key}")
        new = work / f"{key}.vhd"
        if pick is None:
            news.append(Case(key, title, old, new, []))
        else:
            changes = pick(size, rng)
            make_new(old_raw, new, changes, f"{key}-new")
            news.append(Case(key, title, old, new, changes))
    to_vhd(old_raw, old)
    for case in news:
        if not case.changes:
            shutil.copyfile(old, case.new)  # an identical copy of the file
    progress(
        f"[setup] {role}: OLD and {len(news)} NEW images of {size // MIB} MiB"
        f" ({time.perf_counter() - start:.1f} s)"
    )
    old_json = work / f"{role}-old.json"
    manifest = runner.run(
        [str(console_script()), "vhd", "manifest", str(old), "-o", str(old_json)],
        work / "manifest.out",
    )
    chain = ImageChain(host, pool, role)
    before = host.bytes_uploaded
    base, _layers = chain.release(scan_release(str(old)), str(old), [], max_depth=MAX_DEPTH)
    progress(
        f"[setup] {role}: manifest of OLD {manifest.seconds:.2f} s; base {base.volume}"
        f" uploaded whole, {host.bytes_uploaded - before:,} bytes"
    )
    results = []
    for case in news:
        progress(f"[case] {case.title}")
        info = subprocess.run(
            ["qemu-img", "info", "--output=json", str(case.new)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = Result(
            case.key,
            case.title,
            virtual_size=json.loads(info.stdout)["virtual-size"],
            old_file_size=old.stat().st_size,
            new_file_size=case.new.stat().st_size,
            changed_pages=case.pages,
            first_change_offset=min((o for o, _n in case.changes), default=None),
        )
        time_commands(runner, case, old_json, work, rounds, result)
        provider_update(runner, host, chain, base, case, work, result)
        judge(result)
        results.append(result)
        if report:
            print_result(result, number + len(results) - 1)
        for name in ("layer-a.qcow2", "layer-b.qcow2", "ov.qcow2"):
            (work / name).unlink(missing_ok=True)
        case.new.unlink()
    chain.delete(base.volume)
    old.unlink()
    old_json.unlink()
    return results


# -- the report -------------------------------------------------------------------------------


def print_result(r: Result, number: int) -> None:
    first = (
        ""
        if r.first_change_offset is None
        else f"; first change at {r.first_change_offset / r.virtual_size:.0%} of the disk"
    )
    print(f"\n== {number}. {r.title} ==")
    print(
        f"  virtual size {r.virtual_size:,} B; files OLD {r.old_file_size:,} B,"
        f" NEW {r.new_file_size:,} B; {r.changed_pages} pages changed"
        f" ({r.changed_pages * PAGE:,} B){first}"
    )
    print("  whole processes, median of the rounds (order rotated each round); peak RSS")
    for name, t in r.timings.items():
        runs = ", ".join(f"{x:.3f}" for x in t["runs_seconds"])
        print(
            f"    {name}. {t['command']:36} {t['median_seconds']:7.3f} s"
            f"  {t['max_rss'] / MIB:4.0f} MiB   runs {runs}"
            + (f"  (exit {t['exit']})" if name == "c" else "")
        )
    print("  sizes: apparent / allocated (st_blocks x 512) / sparse upload")
    for name, s in r.sizes.items():
        upload = f" / {s['upload_bytes']:,}" if "upload_bytes" in s else ""
        print(
            f"    {name.replace('_', ' '):14} {s['apparent']:>13,} / {s['allocated']:>11,}"
            f"{upload} B; reads as NEW: {s['reads_as_new']}"
        )
    lv = r.libvirt
    print("  libvirt stream (ImageChain.release of NEW over the base, Host.bytes_uploaded)")
    if lv["new_layer"]:
        print(
            f"    streamed       {lv['streamed']:,} B: layer {lv['layer_bytes']:,},"
            f" record {lv['record_bytes']:,} (holes sent as holes: {lv['hole_bytes']:,} B)"
        )
    else:
        print(f"    streamed       {lv['streamed']:,} B: the image is on the host already")
    print(f"    bound          {lv['bound']:,} B  (1.25 x changed pages x 4096 + 65536)")
    ratio = f"{lv['whole_reupload'] / lv['streamed']:,.0f}x" if lv["streamed"] else "vs 0 B of"
    print(
        f"    whole upload   {lv['whole_reupload']:,} B  (NEW re-uploaded, non-sparse;"
        f" {ratio} the update)"
    )
    print(f"    on the host    {lv['layer_volume']} reads as NEW: {lv['layer_reads_as_new']}")
    print(f"    preview        {lv['preview']}")
    rd = r.reads
    print(
        f"  reads per up     NEW itself: {rd['image_bytes']:,} B = {rd['image_ratio']:.3f} x its"
        f" size (strace); every read of the process: {rd['rchar']:,} B = {rd['ratio']:.3f} x"
        f" (that process: {rd['seconds']:.2f} s, peak RSS {rd['max_rss'] / MIB:.0f} MiB)"
    )
    for s in rd["steps"]:
        print(f"    {s['step']:40} {s['ratio']:6.3f}  {s['rchar']:>13,} B  {s['seconds']:6.2f} s")
    print("  goals")
    for g in r.goals:
        print(f"    [{'met' if g.met else 'NOT MET'}] {g.goal}: {g.detail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workdir", default="/var/tmp")
    ap.add_argument("--size-mib", type=int, default=256, help="cases 1 and 2")
    ap.add_argument("--big-mib", type=int, default=1024, help="cases 3 and 4")
    ap.add_argument("--uri", default="qemu:///system")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    if args.rounds < 1 or min(args.size_mib, args.big_mib) < 4:
        ap.error("--rounds must be >= 1 and the sizes >= 4 MiB")
    report = not args.json
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    qemu = subprocess.run(["qemu-img", "--version"], capture_output=True, text=True, check=True)
    machine["qemu_img"] = qemu.stdout.splitlines()[0]
    if report:
        print(f"machine: {machine['cpus']} CPUs, python {machine['python']}, {machine['qemu_img']}")
        print(f"libvirt: {args.uri}; {args.rounds} rounds + 1 warm-up per case")
    work = Path(tempfile.mkdtemp(prefix="vhd-update-", dir=args.workdir))
    os.environ["CLOUDSERVICE_CACHE"] = str(work / "cache")  # this run's, cold
    pool = f"cs-bench-{uuid.uuid4().hex[:6]}"
    results: list[Result] = []
    runner: Runner | None = None
    try:
        runner = Runner(work)
        machine["runner_floor_rss"] = runner.floor
        if report:
            print(
                f"peak RSS floor (the runner's: what `true` reports) {runner.floor / MIB:.1f} MiB"
            )
        with Host(args.uri) as host:
            host.ensure_pool(PoolSpec(name=pool, path=str(POOLS / pool)))
            try:
                small, big = args.size_mib * MIB, args.big_mib * MIB
                results += run_group(
                    runner, work, host, pool, "small", small,
                    [("one-page", f"{args.size_mib} MiB image, one changed 4 KiB page", one_page),
                     ("spread", f"{args.size_mib} MiB image,"
                      f" {min(SPREAD_PAGES, small // BLOCK)} changed pages, one per 2 MiB block,"
                      " spread over the disk", spread_pages)],
                    args.rounds, report, 1,
                )  # fmt: skip
                results += run_group(
                    runner, work, host, pool, "big", big,
                    [("runs", f"{args.big_mib} MiB image, {RUN_FRACTION:.0%} changed in runs"
                      " of 64 KiB to 1 MiB", runs_of_change),
                     ("identical", f"{args.big_mib} MiB image, identical copy", None)],
                    args.rounds, report, 3,
                )  # fmt: skip
            finally:
                for volume in host.volume_names(pool):
                    host.delete_volume(pool, volume)
                host.delete_pool(pool)
    finally:
        if runner is not None:
            runner.close()
        shutil.rmtree(work, ignore_errors=True)
    met = all(g.met for r in results for g in r.goals)
    if args.json:
        doc = {
            "machine": machine,
            "uri": args.uri,
            "rounds": args.rounds,
            "cases": [asdict(r) for r in results],
            "all_goals_met": met,
        }
        print(json.dumps(doc, indent=2))
    else:
        missed = [f"{r.case}: {g.goal}" for r in results for g in r.goals if not g.met]
        print(f"\nall goals met: {met}" + ("".join(f"\n  not met: {m}" for m in missed)))


if __name__ == "__main__":
    main()
