"""Tests for rag.index.lock: one writer across processes, readers share, a killed holder frees the lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rag.errors import IndexLocked
from rag.index.lock import IndexLock

REPO = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from rag.index.lock import IndexLock
    lock = IndexLock(Path(sys.argv[1]))
    with (lock.exclusive() if sys.argv[2] == "exclusive" else lock.shared()):
        print("held", flush=True)
        time.sleep(60)
""")


def hold(index: Path, mode: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(index), mode], stdout=subprocess.PIPE, text=True,
                             env={"PYTHONPATH": str(REPO)})
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_another_process_holding_it_makes_writers_wait_then_fail_naming_it(tmp_path: Path) -> None:
    index = tmp_path / "index" / "default"
    child = hold(index, "exclusive")
    try:
        started = time.monotonic()
        with pytest.raises(IndexLocked, match=f"being written by pid {child.pid}"), \
                IndexLock(index).exclusive(timeout=0.3):
            pass
        assert time.monotonic() - started >= 0.3
        with pytest.raises(IndexLocked), IndexLock(index).shared():
            pass
    finally:
        child.kill()  # SIGKILL: the kernel frees the lock
        child.wait()
    with IndexLock(index).exclusive(timeout=2):
        assert (tmp_path / "index" / ".default.lock").exists()


def test_readers_share_and_keep_writers_out(tmp_path: Path) -> None:
    index = tmp_path / "default"
    child = hold(index, "shared")
    try:
        with IndexLock(index).shared():
            pass
        with pytest.raises(IndexLocked), IndexLock(index).exclusive():
            pass
    finally:
        child.kill()
        child.wait()


def test_waiting_is_announced_once_and_ends_when_the_holder_leaves(tmp_path: Path) -> None:
    index = tmp_path / "default"
    child = hold(index, "exclusive")
    said: list[str] = []
    subprocess.Popen(["sh", "-c", f"sleep 0.3; kill -9 {child.pid}"])
    with IndexLock(index).exclusive(timeout=10, on_wait=said.append):
        pass
    child.wait()
    assert len(said) == 1 and f"pid {child.pid}" in said[0]
