"""The page's pure JavaScript functions (SSE parsing, offset → highlight, wording), run by node's test runner."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS_TESTS = sorted((Path(__file__).parent / "static").glob("*.test.js"))


def test_page_modules_pass_their_node_tests() -> None:
    node = shutil.which("node")
    if node is None:
        reason = "node is not installed: the page's JavaScript unit tests need it"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert len(JS_TESTS) >= 3
    run = subprocess.run([node, "--test", *map(str, JS_TESTS)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# pass 0" not in run.stdout
