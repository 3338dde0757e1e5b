"""Tests for rag.jobs: the one-worker job queue (bounded, failures as errors, progress) and reads-first."""

from __future__ import annotations

import threading
import time

import pytest

from rag.errors import Busy, NotFound, PayloadTooLarge
from rag.jobs import Job, JobQueue, ReadsFirst


def test_jobs_run_one_at_a_time_in_order_and_report_results() -> None:
    queue = JobQueue(capacity=10)
    queue.start()
    order: list[int] = []
    running = threading.Semaphore(1)

    def work(n: int) -> object:
        def run(job: Job) -> int:
            assert running.acquire(blocking=False), "two jobs ran at once"
            time.sleep(0.01)
            job.progress(1, 1)
            order.append(n)
            running.release()
            return n * 10
        return run

    jobs = [queue.submit("t", work(n)) for n in range(5)]
    for job in jobs:
        assert job.finished.wait(5)
    queue.stop()
    assert order == [0, 1, 2, 3, 4]
    assert [(j.status, j.result, j.done, j.total) for j in jobs] == [("done", n * 10, 1, 1) for n in range(5)]
    assert queue.get(jobs[0].id) is jobs[0]


def test_queue_over_capacity_is_busy_and_failures_keep_their_error() -> None:
    queue = JobQueue(capacity=1)
    release = threading.Event()
    queue.start()
    first = queue.submit("t", lambda job: release.wait(5))
    while first.status != "running":
        time.sleep(0.005)
    second = queue.submit("t", lambda job: (_ for _ in ()).throw(PayloadTooLarge("too big")))
    with pytest.raises(Busy, match="1 writes are already waiting"):
        queue.submit("t", lambda job: None)
    release.set()
    assert second.finished.wait(5)
    assert second.status == "failed" and isinstance(second.error, PayloadTooLarge) and str(second.error) == "too big"
    crash = queue.submit("t", lambda job: 1 / 0)
    assert crash.finished.wait(5)
    assert crash.status == "failed" and crash.error is not None and crash.error.status_code == 500
    assert "ZeroDivision" not in str(crash.error)
    queue.stop()
    with pytest.raises(NotFound, match="nope"):
        queue.get("nope")


def test_idle_housekeeping_runs_and_survives_errors() -> None:
    calls: list[int] = []

    def idle() -> None:
        calls.append(1)
        raise RuntimeError("housekeeping failed")

    queue = JobQueue(capacity=1, idle=idle, idle_seconds=0.01)
    queue.start()
    deadline = time.monotonic() + 5
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    job = queue.submit("t", lambda job: "still works")
    assert job.finished.wait(5) and job.result == "still works"
    queue.stop()
    assert len(calls) >= 2


def test_reads_first_pauses_the_writer_while_reads_run_but_not_forever() -> None:
    gate = ReadsFirst(max_pause=0.3)
    started = time.monotonic()
    gate.pause()
    assert time.monotonic() - started < 0.05  # no reads: no pause

    with gate.reading():
        started = time.monotonic()
        gate.pause()
        assert 0.25 < time.monotonic() - started < 1.0  # bounded

    reading = threading.Event()
    done = threading.Event()

    def reader() -> None:
        with gate.reading():
            reading.set()
            time.sleep(0.1)
        done.set()

    threading.Thread(target=reader).start()
    reading.wait(1)
    gate.pause()
    assert done.wait(0.05), "the writer went on while a read was running"
