"""End to end with the real models: multilingual-e5-small embeddings, the Qwen2.5 1.5B GGUF, FAISS, the
HTTP service and the official ``openai`` client. Slow (about a minute); CI runs them too."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.config import Settings
from rag.formats import read_document
from rag.normalize import clean, to_traditional
from rag.service import RagService, build_service

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def service(real_settings: Settings) -> RagService:
    svc = build_service(real_settings)
    assert svc.index.chunk_count() > 50 and len(svc.documents()) == 5
    return svc


def _assert_verified(svc: RagService, citations: list[dict[str, object]] | tuple[object, ...]) -> None:
    for c in citations:
        c = c if isinstance(c, dict) else c.__dict__  # noqa: PLW2901
        original = read_document(svc.settings.corpus_dir / str(c["doc_id"]), str(c["doc_id"])).text
        assert clean(original[int(c["start"]):int(c["end"])]) == c["text"]  # type: ignore[call-overload]


def test_answers_with_a_verified_citation(service: RagService) -> None:
    answer = service.answer([{"role": "user", "content": "阳山县在清远市八个县（市、区）中排名第几？"}])
    assert not answer.refused, answer.reason
    assert "第三" in answer.text or "3" in answer.text
    assert answer.citations and answer.citations[0].doc_id == "000_ae0e48cc884afd96.txt"
    assert "排名第三" in answer.citations[0].text
    _assert_verified(service, answer.citations)
    assert 0 < answer.prompt_tokens < 400


def test_traditional_question_gets_a_traditional_answer(service: RagService) -> None:
    answer = service.answer([{"role": "user", "content": "東莞全年新增公辦園學位多少個？"}])
    assert not answer.refused, answer.reason
    assert "7500" in answer.text
    assert to_traditional(answer.text) == answer.text
    assert answer.citations[0].doc_id.startswith("002_")


def test_refuses_a_question_about_another_county(service: RagService) -> None:
    answer = service.answer([{"role": "user", "content": "山丹县在2021年市县政府履行教育职责评价中排名第几？"}])
    assert answer.refused and answer.citations == ()
    assert "没有找到" in answer.text


def test_follow_up_uses_the_earlier_turn(service: RagService) -> None:
    answer = service.answer([
        {"role": "user", "content": "阳山县在清远市八个县中排名第几？"},
        {"role": "assistant", "content": "第三。"},
        {"role": "user", "content": "那在北部生态发展区呢？"},
    ])
    assert not answer.refused, answer.reason
    assert "第六" in answer.text or "6" in answer.text


@pytest.fixture(scope="module")
def server(service: RagService) -> Iterator[str]:
    import uvicorn

    from rag.server.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(service.settings, service=service), host="127.0.0.1", port=port,
                            log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not srv.started and time.time() < deadline:
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_official_openai_client_works_unchanged(server: str, service: RagService) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)
    resp = client.chat.completions.create(model="rag", messages=[
        {"role": "user", "content": "辽源市教育局党组书记、局长是谁？"}])
    body = resp.model_dump()
    assert "高凯" in (resp.choices[0].message.content or "")
    assert body["refused"] is False and body["citations"][0]["doc_id"].startswith("004_")
    _assert_verified(service, body["citations"])

    chunks = list(client.chat.completions.create(model="rag", stream=True, messages=[
        {"role": "user", "content": "辽源市教育局党组书记、局长是谁？"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = chunks[-1].model_dump()
    assert "高凯" in text and final["refused"] is False and final["citations"]


def test_health_and_search_over_http(server: str) -> None:
    import httpx

    health = httpx.get(f"{server}/health", timeout=30).json()
    assert health["status"] == "ready" and health["index"]["documents"] == 5
    check = health["models"].pop("llm_check")
    assert health["models"] == {"llm": "qwen2.5-coder-1.5b-instruct-q4_k_m", "embedder": "multilingual-e5-small"}
    # The decode the model passed in a child process before this process loaded it, and the build it ran on.
    assert check["ok"] is True and check["detail"].startswith("decoded ")
    assert "-DGGML_NATIVE=OFF" in check["cmake_args"] and "-DGGML_AMX_TILE=OFF" in check["cmake_args"]
    found = httpx.post(f"{server}/v1/search", json={"query": "陽山縣排名第三", "top_k": 3}, timeout=30).json()
    assert found["results"][0]["doc_id"] == "000_ae0e48cc884afd96.txt"
    assert json.dumps(found, ensure_ascii=False).count("doc_id") == 3
