"""Requests/s and latency through the front door vs straight to one backend (a script).

    .venv/bin/python benchmarks/frontdoor.py [--rounds 5] [--seconds 2] [--concurrency 1]
    .venv/bin/python benchmarks/frontdoor.py --direct http://10.213.0.10:80/ \\
        --front-door http://127.0.0.1:8080/

Without URLs, the script starts two local backends (`python -m http.server` processes on
127.0.0.1, so they share no GIL with the client) and a front door over both in a temporary
directory (stopped and removed at the end); "direct" is the first backend.

Each round times both targets with the same client for `--seconds` each, in an order that
alternates by round (paired, so a busy spell of a shared machine hits both alike). A request
is GET on a new connection (what a client without keep-alive pays; HAProxy keeps its own
pooled connections to the servers). Printed per target: the medians over the rounds of
requests/s, p50 and p99 latency, then the median of the per-round ratios front door / direct.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "provider"))

from cloudservice.frontdoor import (  # noqa: E402
    FrontDoor,
    FrontDoorSpec,
    HealthCheck,
    Listener,
    Server,
)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: urllib.parse.SplitResult, timeout: float) -> None:
    connection = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=timeout)
    try:
        connection.request("GET", url.path or "/")
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    finally:
        connection.close()


def measure(url: str, seconds: float, concurrency: int) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, failures) of `concurrency` clients looping for `seconds`."""
    target = urllib.parse.urlsplit(url)
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        mine: list[float] = []
        failed = 0
        while (start := time.perf_counter()) < deadline:
            try:
                _get(target, timeout=10)
            except Exception:  # counted, whatever the kind
                failed += 1
                continue
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)
            failures[0] += failed

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if not latencies:
        raise SystemExit(f"no request to {url} succeeded ({failures[0]} failed)")
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000, failures[0]


@contextlib.contextmanager
def local_targets() -> Iterator[tuple[str, str]]:
    """Two local backends and a front door over both: (direct URL, front door URL)."""
    with tempfile.TemporaryDirectory(prefix="fd-bench-") as work:
        processes = []
        servers = []
        try:
            for name in ("a", "b"):
                root = Path(work, name)
                root.mkdir()
                (root / "index.html").write_text(name)
                port = _free_port()
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                        cwd=root,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                servers.append(Server(name=name, address="127.0.0.1", port=port))
            door = FrontDoor(Path(work, "door"))
            listen = _free_port()
            door.apply(
                FrontDoorSpec(
                    name="bench",
                    listeners=(
                        Listener(
                            name="web", port=listen, probe=HealthCheck(), servers=tuple(servers)
                        ),
                    ),
                )
            )
            try:
                for server in servers:
                    door.wait_up("web", server.name, timeout=10)
                yield f"http://127.0.0.1:{servers[0].port}/", f"http://127.0.0.1:{listen}/"
            finally:
                door.stop()
        finally:
            for process in processes:
                process.terminate()
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--direct", help="URL of one backend (default: a local one)")
    parser.add_argument("--front-door", help="URL of the front door over it (default: local)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="per target per round")
    parser.add_argument("--concurrency", type=int, default=1, help="client threads")
    args = parser.parse_args()
    if bool(args.direct) != bool(args.front_door):
        parser.error("give both --direct and --front-door, or neither (local targets)")
    targets = (
        contextlib.nullcontext((args.direct, args.front_door)) if args.direct else local_targets()
    )
    with targets as (direct, front_door):
        urls = {"direct": direct, "front door": front_door}
        for url in urls.values():  # warm up: connections, caches, health checks
            measure(url, 0.3, args.concurrency)
        results: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in urls}
        for round_ in range(args.rounds):
            order = list(urls.items())
            if round_ % 2:
                order.reverse()
            for name, url in order:
                result = measure(url, args.seconds, args.concurrency)
                results[name].append(result)
                rps, p50, p99, failed = result
                print(
                    f"round {round_ + 1}: {name:<10} {rps:8.0f} req/s  p50 {p50:6.2f} ms  "
                    f"p99 {p99:6.2f} ms  failed {failed}",
                    flush=True,
                )
    print(f"\nmedians over {args.rounds} rounds, concurrency {args.concurrency}")
    print(f"{'target':<12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'failed':>8}")
    for name, rows in results.items():
        print(
            f"{name:<12}{statistics.median(r[0] for r in rows):>10.0f}"
            f"{statistics.median(r[1] for r in rows):>10.2f}"
            f"{statistics.median(r[2] for r in rows):>10.2f}"
            f"{sum(r[3] for r in rows):>8}"
        )
    pairs = list(zip(results["front door"], results["direct"], strict=True))
    print(
        "front door / direct (median of per-round ratios): "
        f"req/s {statistics.median(f[0] / d[0] for f, d in pairs):.2f}, "
        f"p50 {statistics.median(f[1] / d[1] for f, d in pairs):.2f}, "
        f"p99 {statistics.median(f[2] / d[2] for f, d in pairs):.2f}"
    )


if __name__ == "__main__":
    main()
