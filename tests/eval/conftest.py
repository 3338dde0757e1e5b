"""A tiny slice of the real CMRC 2018 trial file: its first three paragraphs (TRIAL_800 泡泡战士 and TRIAL_154
尤金袋鼠, kept in the archive; TRIAL_598 松平康忠, left out at the default share), 14 questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.eval.cmrc import BENCHMARKS

SLICE_PARAGRAPHS = 3


@pytest.fixture(scope="session")
def cmrc_file() -> Path:
    path = BENCHMARKS["cmrc2018"]
    if not path.is_file():
        pytest.skip(f"the CMRC 2018 trial file is not at {path}")
    return path


@pytest.fixture
def cmrc_slice(cmrc_file: Path, tmp_path: Path) -> Path:
    data = json.loads(cmrc_file.read_text(encoding="utf-8"))
    path = tmp_path / "cmrc_slice.json"
    path.write_text(json.dumps({"version": data["version"], "data": data["data"][:SLICE_PARAGRAPHS]},
                               ensure_ascii=False), encoding="utf-8")
    return path
