"""Progress statuses: throttled, forced, and nothing outside a call."""

from __future__ import annotations

import contextvars
import threading

from cloudservice import progress


def test_outside_a_call_statuses_go_nowhere() -> None:
    progress.status("uploading x: 1 of 2 bytes sent")  # no reporter: no error, no output
    progress.summary("done")


def test_statuses_are_throttled_unless_forced_and_summaries_always_sent() -> None:
    sent: list[tuple[str, bool]] = []
    with progress.reporting(lambda message, ephemeral: sent.append((message, ephemeral))):
        for n in range(100):
            progress.status(f"chunk {n}")
        progress.status("update domain 0: restarting", force=True)
        progress.summary("image uploaded")
    assert sent[0] == ("chunk 0", True)  # the first is shown at once
    assert len([m for m, _ in sent if m.startswith("chunk")]) == 1  # the rest within 0.5 s
    assert sent[-2:] == [("update domain 0: restarting", True), ("image uploaded", False)]


def test_a_calls_worker_threads_report_to_that_call() -> None:
    sent: list[str] = []
    with progress.reporting(lambda message, _ephemeral: sent.append(message)):
        context = contextvars.copy_context()  # what asyncio.to_thread hands the worker
        worker = threading.Thread(target=context.run, args=(progress.summary, "from a worker"))
        worker.start()
        worker.join()
    assert sent == ["from a worker"]
