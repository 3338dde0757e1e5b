"""One writer across processes: an advisory file lock beside the index (``index/.<name>.lock``).

Every process that changes an index (the server's writer thread, ``rag ingest``) holds the lock
exclusively for the whole read-modify-save, so neither saves its stale copy over the other's update.
A server reloading a newer generation holds it shared, so the generation cannot vanish mid-read.
The lock is ``flock(2)``: the kernel frees it when its holder exits, a ``kill -9`` included.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import IndexLocked

_POLL_SECONDS = 0.05


class IndexLock:
    """The lock of the index at ``index_path``; each ``exclusive``/``shared`` use opens its own handle."""

    def __init__(self, index_path: Path) -> None:
        self.path = index_path.parent / f".{index_path.name}.lock"

    def holder(self) -> str:
        """Who holds (or last held) the lock exclusively, as its holder wrote it: pid and command."""
        try:
            return self.path.read_text("utf-8").strip() or "another process"
        except OSError:
            return "another process"

    @contextmanager
    def exclusive(self, timeout: float = 0.0, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold the lock alone; wait up to ``timeout`` seconds, then raise ``IndexLocked``."""
        with self._locked(fcntl.LOCK_EX, timeout, on_wait) as fd:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} ({_command()})\n".encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)

    @contextmanager
    def shared(self, timeout: float = 0.0) -> Iterator[None]:
        """Hold the lock with other readers, while no writer holds it."""
        with self._locked(fcntl.LOCK_SH, timeout, None):
            yield

    @contextmanager
    def _locked(self, mode: int, timeout: float, on_wait: Callable[[str], None] | None) -> Iterator[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise IndexLocked(f"the index {self.path.parent / self.path.name[1:-5]} is being written "
                                          f"by {self.holder()}; retry when it has finished") from None
                    if on_wait is not None:
                        on_wait(self.holder())
                        on_wait = None  # say it once
                    time.sleep(_POLL_SECONDS)
            yield fd
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def _command() -> str:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:2]] if sys.argv and sys.argv[0] else ["python"]
    return " ".join(argv)
