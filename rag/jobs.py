"""Jobs: index writes (uploads, deletes) run one at a time on one worker thread, off the request threads.

A request submits a job and gets its id at once; the queue of waiting jobs is bounded (``Busy`` past it),
so no number of uploads can tie up the threads that searches, health checks and chats need. When idle,
the worker runs a housekeeping callback (the index writer uses it to notice updates by other processes).
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from rag.errors import Busy, NotFound, RagError

log = logging.getLogger(__name__)

Status = Literal["queued", "running", "done", "failed"]
IDLE_SECONDS = 1.0


@dataclass
class Job:
    """One write and how far it got. ``result`` is what the work returned (e.g. the new document record)."""

    id: str
    kind: str
    status: Status = "queued"
    done: int = 0
    total: int = 0
    result: Any = None
    error: RagError | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total


Work = Callable[[Job], Any]


class JobQueue:
    """At most ``capacity`` jobs wait; one runs. Finished jobs stay readable (the latest ``keep``)."""

    def __init__(self, capacity: int, idle: Callable[[], None] | None = None, keep: int = 500,
                 idle_seconds: float = IDLE_SECONDS) -> None:
        self._waiting: queue.Queue[tuple[Job, Work] | None] = queue.Queue(maxsize=max(capacity, 1))
        self._capacity = capacity
        self._idle = idle
        self._idle_seconds = idle_seconds
        self._keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="index-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running job, drop the waiting ones, and end the worker."""
        while True:
            try:
                job, _ = self._waiting.get_nowait() or (None, None)
            except queue.Empty:
                break
            if job is not None:
                self._fail(job, Busy("the service is shutting down; retry after it restarts"))
        if self._thread is not None:
            self._waiting.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, kind: str, work: Work) -> Job:
        """Queue ``work``; raise ``Busy`` (503) when ``capacity`` jobs already wait."""
        job = Job(uuid.uuid4().hex, kind)
        try:
            if self._capacity == 0 and self.pending() > 0:
                raise queue.Full
            self._waiting.put_nowait((job, work))
        except queue.Full:
            raise Busy(f"the index writer is busy and {self._waiting.qsize()} writes are already waiting; "
                       "retry shortly") from None
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                oldest = next(iter(self._jobs.values()))
                if not oldest.finished.is_set():
                    break
                self._jobs.popitem(last=False)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return job

    def pending(self) -> int:
        """Jobs waiting or running."""
        with self._lock:
            return sum(1 for j in self._jobs.values() if not j.finished.is_set())

    def _run(self) -> None:
        while True:
            try:
                item = self._waiting.get(timeout=self._idle_seconds)
            except queue.Empty:
                self._housekeeping()
                continue
            if item is None:
                return
            job, work = item
            job.status = "running"
            try:
                job.result = work(job)
                job.status = "done"
                job.finished.set()
            except RagError as exc:
                self._fail(job, exc)
            except Exception:
                log.exception("job %s (%s) failed", job.id, job.kind)
                self._fail(job, RagError("internal error; see the server log"))

    def _housekeeping(self) -> None:
        if self._idle is None:
            return
        try:
            self._idle()
        except Exception:  # housekeeping must never end the worker
            log.exception("index housekeeping failed")

    @staticmethod
    def _fail(job: Job, error: RagError) -> None:
        job.error = error
        job.status = "failed"
        job.finished.set()


class ReadsFirst:
    """Reads before writes on a 2-core machine: the writer pauses between embedding batches while searches
    or answers are being computed (at most ``max_pause`` seconds per batch, so writes still progress)."""

    def __init__(self, max_pause: float = 3.0) -> None:
        self.max_pause = max_pause
        self._active = 0
        self._idle = threading.Condition()

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._idle:
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def pause(self) -> None:
        """Called by the writer between batches: wait while reads run (bounded)."""
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=self.max_pause)
