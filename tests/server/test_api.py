"""Tests for the HTTP layer (``rag.server.api`` routes, ``rag.server.app`` factory, error handlers), with fakes."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rag.config import Settings
from rag.formats import read_document
from rag.generate import Completion
from rag.index import Index, index_version
from rag.ingest import ingest_paths
from rag.normalize import clean, to_simplified, to_traditional
from rag.server.app import create_app
from rag.service import RagService
from tests.fakes import FAKE_PARTS, FakeEmbedder, FakeGenerator

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CORPUS = REPO / "corpus"
DOC0 = "000_ae0e48cc884afd96.txt"
DOC2 = "002_9f3d902dfed96728.txt"
REFUSAL = (REPO / "prompts" / "refusal.txt").read_text("utf-8").strip()

QUESTION = "阳山县在清远市八个县中排名第几？"
UNANSWERABLE = "火星基地的预算是多少？"
# Answered from the Simplified doc 003: the answer is converted to Traditional ("布局" → "佈局").
TRADITIONAL_FROM_SIMPLIFIED = "中小學幼兒園資源佈局要做到什麼？"

CHAT_KEYS = {"id", "object", "created", "model", "choices", "usage", "citations", "refused", "reason", "context"}
CITATION_KEYS = {"doc_id", "start", "end", "text", "section"}
RESULT_KEYS = {"doc_id", "chunk_id", "start", "end", "section", "text", "score"}
DOCUMENT_KEYS = {"id", "title", "characters", "chunks", "sha256", "ingested_at"}
USAGE_KEYS = {"prompt_tokens", "completion_tokens", "total_tokens"}
TIMEOUT = 10.0


# --- fixtures and helpers -----------------------------------------------------------------------------
def make_settings(root: Path, *, with_index: bool = True, **overrides: Any) -> Settings:
    """Settings with the fakes, a private copy of the sample corpus, and (by default) a built index."""
    corpus = root / "data" / "docs" / "corpus"
    shutil.copytree(SAMPLE_CORPUS, corpus)
    for f in corpus.iterdir():
        f.chmod(0o644)
    settings = Settings(index_dir=root / "index", corpus_dir=corpus,
                        models_dir=root / "models", **overrides)
    if with_index:
        index, _ = ingest_paths([corpus], settings, FakeEmbedder(), None)
    return settings


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    """One app over the sample corpus, for tests that do not change it."""
    settings = make_settings(tmp_path_factory.mktemp("api"))
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        yield client, settings


@pytest.fixture
def client(shared: tuple[TestClient, Settings]) -> TestClient:
    return shared[0]


@pytest.fixture
def settings(shared: tuple[TestClient, Settings]) -> Settings:
    return shared[1]


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    """An app of its own, for tests that upload or delete documents."""
    settings = make_settings(tmp_path, max_upload_bytes=4096)
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        yield client, settings


def chat(client: TestClient, content: str, headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    """POST one user question; ``extra`` goes into the JSON body."""
    return client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}], **extra},
                       headers=headers)


def assert_error(response: httpx.Response, status: int, kind: str) -> str:
    """Exactly the error envelope, no traceback; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    assert "Traceback" not in response.text and 'File "' not in response.text
    return message


def assert_span(corpus: Path, item: dict[str, Any]) -> None:
    """``start``/``end`` index the original file; cleaning that slice gives exactly ``text``."""
    source = read_document(corpus / item["doc_id"], item["doc_id"]).text
    assert 0 <= item["start"] < item["end"] <= len(source)
    assert clean(source[item["start"]:item["end"]]) == item["text"]


def sse_events(response: httpx.Response) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON chunks of an event stream, and every non-blank line (to check the framing)."""
    lines = [line for line in response.text.split("\n") if line.strip()]
    chunks = [json.loads(line[len("data: "):]) for line in lines if line != "data: [DONE]"]
    return chunks, lines


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)


def upload(client: TestClient, name: str, data: bytes, **kwargs: Any) -> httpx.Response:
    return client.post("/v1/documents", files={"file": (name, data, "text/plain")}, **kwargs)


def files_under(root: Path, skip: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and skip not in p.parents}


# --- health and models --------------------------------------------------------------------------------
def test_health_reports_models_and_index_counts(client: TestClient, settings: Settings) -> None:
    index = Index.open(settings.index_path)
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "models": {"llm": "fake-llm", "embedder": "fake-64"},
                               "index": {"documents": len(index.documents), "chunks": index.chunk_count()}}
    assert response.json()["index"]["documents"] == 5


def test_health_counts_without_reading_every_record(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A load balancer polls it: counting 100k chunks' documents record by record took 27 ms."""
    from rag.index.corpus import CorpusStore

    monkeypatch.setattr(CorpusStore, "records", lambda self: pytest.fail("read every record"))
    assert client.get("/health").json()["index"]["documents"] == 5


def test_without_index_health_is_not_ready_and_search_is_503(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, with_index=False)
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "not_ready", "models": {"llm": "fake-llm", "embedder": "fake-64"},
                                 "index": {"documents": 0, "chunks": 0}}

        search = client.post("/v1/search", json={"query": "阳山"})
        message = assert_error(search, 503, "not_ready")
        assert "no index" in message
        assert int(search.headers["retry-after"]) > 0

        answer = chat(client, QUESTION)
        assert_error(answer, 503, "not_ready")
        assert int(answer.headers["retry-after"]) > 0


def test_models_lists_the_generator(client: TestClient) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert len(body["data"]) == 1
    assert body["data"][0]["id"] == "fake-llm"
    assert body["data"][0]["object"] == "model"


# --- search -------------------------------------------------------------------------------------------
def test_search_shape_order_and_spans(client: TestClient, settings: Settings) -> None:
    response = client.post("/v1/search", json={"query": "阳山县在清远市排名第几"})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["results"]
    results = body["results"]
    assert len(results) == 5  # the default top_k
    for r in results:
        assert set(r) == RESULT_KEYS
        assert isinstance(r["score"], float)
        assert_span(settings.corpus_dir, r)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert results[0]["doc_id"] == DOC0
    assert len({r["chunk_id"] for r in results}) == 5


def test_search_top_k_and_doc_ids(client: TestClient, settings: Settings) -> None:
    three = client.post("/v1/search", json={"query": "教育高质量发展", "top_k": 3}).json()["results"]
    assert len(three) == 3

    only = client.post("/v1/search", json={"query": "教育高质量发展", "top_k": 50, "doc_ids": [DOC2]})
    assert only.status_code == 200
    results = only.json()["results"]
    assert results
    assert {r["doc_id"] for r in results} == {DOC2}
    assert len(results) == len(Index.open(settings.index_path).chunks_of(DOC2))

    none = client.post("/v1/search", json={"query": "教育", "doc_ids": ["no-such.txt"]})
    assert none.status_code == 200
    assert none.json() == {"results": []}


def test_every_chunk_span_cleans_to_its_text(client: TestClient, settings: Settings) -> None:
    """All chunks of the corpus, in both scripts of the query: spans point at the original file."""
    total = Index.open(settings.index_path).chunk_count()
    for query in ("教育工作", "教育工作會議"):
        results = client.post("/v1/search", json={"query": query, "top_k": 100}).json()["results"]
        assert len(results) == total
        for r in results:
            assert_span(settings.corpus_dir, r)


def test_search_traditional_query_finds_simplified_text(client: TestClient) -> None:
    """Doc 004 is in Simplified; a Traditional query still finds it first."""
    results = client.post("/v1/search", json={"query": "遼源市教育系統領導幹部大會", "top_k": 1}).json()["results"]
    assert results[0]["doc_id"] == "004_c849ceb370c41d84.txt"


@pytest.mark.parametrize(("body", "where"), [
    ({}, "query"),
    ({"query": ""}, "query"),
    ({"query": "阳山", "top_k": 0}, "top_k"),
    ({"query": "阳山", "top_k": 101}, "top_k"),
    ({"query": "阳山", "top_k": "many"}, "top_k"),
    ({"query": "阳山", "doc_ids": "000.txt"}, "doc_ids"),
])
def test_search_rejects_bad_bodies(client: TestClient, body: dict[str, Any], where: str) -> None:
    assert where in assert_error(client.post("/v1/search", json=body), 400, "invalid_request_error")


def test_search_rejects_blank_and_overlong_queries(client: TestClient, settings: Settings) -> None:
    assert_error(client.post("/v1/search", json={"query": "   "}), 400, "invalid_request_error")
    limit = settings.max_question_chars
    message = assert_error(client.post("/v1/search", json={"query": "阳" * (limit + 1)}), 400,
                           "invalid_request_error")
    assert f"{limit + 1}" in message and f"{limit}" in message


# --- chat completions ---------------------------------------------------------------------------------
def test_chat_completion_shape_and_citations(client: TestClient, settings: Settings) -> None:
    response = chat(client, QUESTION, model="anything")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == CHAT_KEYS
    assert body["object"] == "chat.completion"
    assert body["model"] == "fake-llm"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert len(body["choices"]) == 1
    choice = body["choices"][0]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert set(choice["message"]) == {"role", "content"}
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert content.endswith("。") and len(content) > 1
    assert set(body["usage"]) == USAGE_KEYS
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert body["refused"] is False and body["reason"] == ""
    citations = body["citations"]
    assert citations
    for c in citations:
        assert set(c) == CITATION_KEYS
        assert_span(settings.corpus_dir, c)
    assert citations[0]["doc_id"] == DOC0
    assert "排名第三" in citations[0]["text"]
    assert any(content[:-1] in c["text"] for c in citations)  # the fake copies a clause of passage [1]
    # What the model was shown: sentences of the corpus, the cited one among them.
    assert body["context"] and all(set(c) == CITATION_KEYS for c in body["context"])
    for c in body["context"]:
        assert_span(settings.corpus_dir, c)
    assert citations[0]["text"] in [c["text"] for c in body["context"]]


def test_chat_accepts_content_parts(client: TestClient) -> None:
    parts = [{"type": "text", "text": "阳山县在清远市"}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "text", "text": "八个县中排名第几？"}]
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}]})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == chat(client, QUESTION).json()["choices"][0][
        "message"]["content"]


# Sample 001's question is answered from its text: its chunks are no longer embedded under a cut first sentence
# as the document's title (#25), which is what the fake embedder had matched 堅持和加強黨… against.
@pytest.mark.parametrize("question", ["山丹縣實施教育提速增質三年行動嗎？", TRADITIONAL_FROM_SIMPLIFIED])
def test_traditional_question_gets_traditional_answer(client: TestClient, settings: Settings, question: str) -> None:
    body = chat(client, question).json()
    assert body["refused"] is False
    content = body["choices"][0]["message"]["content"]
    assert to_simplified(content) != content  # written in Traditional
    for c in body["citations"]:
        assert_span(settings.corpus_dir, c)


def test_simplified_question_gets_simplified_answer(client: TestClient) -> None:
    body = chat(client, "山丹县实施教育提速增质三年行动吗？").json()
    assert body["refused"] is False
    content = body["choices"][0]["message"]["content"]
    assert to_simplified(content) == content
    traditional = chat(client, "山丹縣實施教育提速增質三年行動嗎？").json()["choices"][0]["message"]["content"]
    assert content == to_simplified(traditional)


def test_unanswerable_question_is_refused(client: TestClient) -> None:
    body = chat(client, UNANSWERABLE).json()
    assert set(body) == CHAT_KEYS
    assert body["refused"] is True
    assert body["citations"] == []
    assert "coverage" in body["reason"]  # which check refused, for the page to explain
    assert body["choices"][0]["message"] == {"role": "assistant", "content": REFUSAL}
    assert body["choices"][0]["finish_reason"] == "stop"


def test_unanswerable_traditional_question_is_refused_in_traditional(client: TestClient) -> None:
    body = chat(client, "火星基地的預算是多少？").json()
    assert body["refused"] is True
    assert body["citations"] == []
    content = body["choices"][0]["message"]["content"]
    assert content == to_traditional(REFUSAL)
    assert content != REFUSAL


# --- streaming ----------------------------------------------------------------------------------------
def check_stream(response: httpx.Response) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Check the framing of an event stream; returns the chunks and the final chunk."""
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks, lines = sse_events(response)
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert lines.count("data: [DONE]") == 1
    assert len(chunks) >= 3
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"fake-llm"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["choices"][0]["delta"] == {}
    assert isinstance(final["refused"], bool)
    for c in chunks[:-1]:
        assert c["choices"][0]["finish_reason"] is None
        assert not {"citations", "refused", "reason", "context"} & set(c)
    assert isinstance(final["reason"], str) and bool(final["reason"]) == final["refused"]
    return chunks, final


def test_stream_matches_the_non_stream_answer(client: TestClient, settings: Settings) -> None:
    whole = chat(client, QUESTION).json()
    chunks, final = check_stream(chat(client, QUESTION, stream=True))
    assert content_of(chunks) == whole["choices"][0]["message"]["content"]
    assert final["refused"] is False
    assert final["citations"] == whole["citations"]
    assert final["context"] == whole["context"] and final["context"]
    assert set(final["usage"]) == USAGE_KEYS
    assert final["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]
    for c in final["citations"]:
        assert set(c) == CITATION_KEYS
        assert_span(settings.corpus_dir, c)


def test_stream_of_a_refusal(client: TestClient) -> None:
    chunks, final = check_stream(chat(client, UNANSWERABLE, stream=True))
    assert content_of(chunks) == REFUSAL
    assert final["refused"] is True
    assert final["citations"] == []
    assert final["context"] == []  # refused before the model was asked


def test_stream_in_traditional_matches_the_non_stream_answer(client: TestClient) -> None:
    """A phrase split across deltas converts as in the whole text ("布局" → "佈局"): the stream converts whole
    clause prefixes (``rag.service.StreamVerifier``), never one delta on its own."""
    whole = chat(client, TRADITIONAL_FROM_SIMPLIFIED).json()["choices"][0]["message"]["content"]
    chunks, final = check_stream(chat(client, TRADITIONAL_FROM_SIMPLIFIED, stream=True))
    assert final["refused"] is False
    assert content_of(chunks) == whole


def test_stream_overruled_by_the_evidence_check_shows_only_the_refusal(tmp_path: Path) -> None:
    """The service holds generated text until the checks after generation pass: a refused answer never
    reaches the client, the stream carries exactly the non-streamed refusal."""
    settings = make_settings(tmp_path)
    generator = FakeGenerator(reply="天空是蓝色的。")
    service = RagService(settings, FakeEmbedder(), generator, Index.open(settings.index_path))
    with TestClient(create_app(settings, service=service)) as client:
        whole = chat(client, QUESTION).json()
        assert whole["refused"] is True
        assert whole["choices"][0]["message"]["content"] == REFUSAL
        chunks, final = check_stream(chat(client, QUESTION, stream=True))
    assert content_of(chunks) == REFUSAL
    assert "天空" not in content_of(chunks)
    assert final["refused"] is True
    assert final["citations"] == []


def test_stream_error_comes_as_json_before_any_event(client: TestClient) -> None:
    response = client.post("/v1/chat/completions",
                           json={"messages": [{"role": "wizard", "content": "你好"}], "stream": True})
    assert "wizard" in assert_error(response, 400, "invalid_request_error")


def test_openai_client_works_against_the_api(client: TestClient) -> None:
    """The official client parses our replies, plain and streamed (extra fields ride along)."""
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)
    reply = api.chat.completions.create(model="fake-llm", messages=[{"role": "user", "content": QUESTION}])
    whole = chat(client, QUESTION).json()
    assert reply.choices[0].message.content == whole["choices"][0]["message"]["content"]
    assert reply.model_extra is not None and reply.model_extra["refused"] is False
    parts = api.chat.completions.create(model="fake-llm", stream=True,
                                        messages=[{"role": "user", "content": QUESTION}])
    streamed = "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
    assert streamed == reply.choices[0].message.content
    assert [m.id for m in api.models.list()] == ["fake-llm"]


# --- request errors -----------------------------------------------------------------------------------
def test_malformed_json_body(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", content=b'{"messages": [', headers={"content-type":
                                                                                     "application/json"})
    assert_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize(("body", "where"), [
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": "你好"}, "messages"),
    ({"messages": [{"content": "你好"}]}, "role"),
    ({"messages": [{"role": "user", "content": "你好"}], "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "你好"}], "temperature": 3}, "temperature"),
    ({"messages": [{"role": "user", "content": "你好"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "你好"}], "max_tokens": "many"}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "你好"}], "stream": "perhaps"}, "stream"),
])
def test_chat_rejects_invalid_bodies(client: TestClient, body: dict[str, Any], where: str) -> None:
    assert where in assert_error(client.post("/v1/chat/completions", json=body), 400, "invalid_request_error")


@pytest.mark.parametrize(("messages", "expected"), [
    ([{"role": "wizard", "content": "你好"}], "'wizard'"),
    ([{"role": "user", "content": "你好"}, {"role": "assistant", "content": "好"}], "last message"),
    ([{"role": "system", "content": "你好"}], "last message"),
    ([{"role": "user", "content": ""}], "non-empty"),
    ([{"role": "user", "content": "   "}], "non-empty"),
])
def test_chat_rejects_unanswerable_messages(client: TestClient, messages: list[dict[str, str]],
                                            expected: str) -> None:
    response = client.post("/v1/chat/completions", json={"messages": messages})
    assert expected in assert_error(response, 400, "invalid_request_error")


def test_chat_rejects_oversized_content(client: TestClient, settings: Settings) -> None:
    limit = settings.max_question_chars
    message = assert_error(chat(client, "问" * (limit + 1)), 400, "invalid_request_error")
    assert message == f"messages[0].content has {limit + 1} characters; the limit is {limit}"


def test_unknown_route_is_404_envelope(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing-here"), 404, "not_found_error")
    assert_error(client.post("/nope", json={}), 404, "not_found_error")


def test_wrong_method_is_405_envelope(client: TestClient) -> None:
    assert_error(client.get("/v1/chat/completions"), 405, "invalid_request_error")
    assert_error(client.put("/v1/search", json={"query": "阳山"}), 405, "invalid_request_error")


def test_405_keeps_the_allow_header(client: TestClient) -> None:
    """The error handler (``http_error`` in rag/server/app.py) keeps the ``Allow`` header that Starlette sets
    and RFC 9110 §15.5.6 requires on a 405."""
    response = client.get("/v1/chat/completions")
    assert response.status_code == 405
    assert response.headers.get("allow") == "POST"


def test_unexpected_error_is_500_envelope_without_details(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, queue_size=0)
    service = RagService(settings, FakeEmbedder(), ExplodingOnceGenerator(), Index.open(settings.index_path))
    with TestClient(create_app(settings, service=service), raise_server_exceptions=False) as client:
        response = chat(client, QUESTION)
        message = assert_error(response, 500, "internal_error")
        assert "secret detail" not in response.text and "RuntimeError" not in response.text
        assert message == "internal error; see the server log"
        # The failed request left the one generation slot free.
        assert chat(client, QUESTION).status_code == 200


class ExplodingOnceGenerator(FakeGenerator):
    """Fails the first generation with an unexpected error, then behaves."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def stream(self, messages: Sequence[dict[str, str]], max_tokens: int,
               temperature: float) -> Iterator[str | Completion]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("secret detail")
        yield from super().stream(messages, max_tokens, temperature)


# --- API key ------------------------------------------------------------------------------------------
def test_api_key_guards_v1_but_not_health(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_key="secret")
    good = {"Authorization": "Bearer secret"}
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        assert client.get("/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "secret"},
                        {"Authorization": "Basic secret"}):
            assert_error(client.get("/v1/models", headers=headers), 401, "authentication_error")
            assert_error(client.post("/v1/search", json={"query": "阳山"}, headers=headers), 401,
                         "authentication_error")
            assert_error(chat(client, QUESTION, headers=headers), 401, "authentication_error")
            assert_error(client.get("/v1/documents", headers=headers), 401, "authentication_error")
            assert_error(upload(client, "x.txt", "内容".encode(), headers=headers), 401, "authentication_error")
            assert_error(client.delete(f"/v1/documents/{DOC0}", headers=headers), 401, "authentication_error")
        assert (settings.corpus_dir / DOC0).exists()
        assert not (settings.corpus_dir / "x.txt").exists()

        assert client.get("/v1/models", headers=good).status_code == 200
        assert client.post("/v1/search", json={"query": "阳山"}, headers=good).status_code == 200
        assert chat(client, QUESTION, headers=good).status_code == 200
        assert client.get("/v1/documents", headers=good).status_code == 200


# --- busy ---------------------------------------------------------------------------------------------
class BlockingGenerator(FakeGenerator):
    """The fake generator, but each generation waits until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def stream(self, messages: Sequence[dict[str, str]], max_tokens: int,
               temperature: float) -> Iterator[str | Completion]:
        self.started.set()
        if not self.release.wait(TIMEOUT):
            raise RuntimeError("the test never released the generator")
        yield from super().stream(messages, max_tokens, temperature)


def run_in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["response"] = fn()
        except BaseException as exc:  # reported by the assertions in the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("stream", [False, True])
def test_busy_generation_gives_503_while_health_and_search_answer(tmp_path: Path, stream: bool) -> None:
    settings = make_settings(tmp_path, queue_size=0)
    generator = BlockingGenerator()
    service = RagService(settings, FakeEmbedder(), generator, Index.open(settings.index_path))
    with TestClient(create_app(settings, service=service)) as client:
        thread, out = run_in_thread(lambda: chat(client, QUESTION, stream=stream))
        try:
            assert generator.started.wait(TIMEOUT), "the first generation never started"

            busy = chat(client, QUESTION)
            assert_error(busy, 503, "server_busy")
            assert int(busy.headers["retry-after"]) > 0
            assert_error(chat(client, QUESTION, stream=True), 503, "server_busy")

            assert client.get("/health").status_code == 200
            search = client.post("/v1/search", json={"query": "阳山县排名"})
            assert search.status_code == 200
            assert search.json()["results"]
            assert client.get("/v1/documents").status_code == 200
            assert thread.is_alive()  # still generating: the answers above did not wait for it
        finally:
            generator.release.set()
            thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert "error" not in out, out.get("error")
        first = out["response"]
        assert first.status_code == 200
        if stream:
            assert check_stream(first)[1]["refused"] is False
        else:
            assert first.json()["refused"] is False
        # The slot is free again.
        assert chat(client, QUESTION).status_code == 200


def test_queue_admits_waiting_requests_up_to_its_size(tmp_path: Path) -> None:
    """With one waiting place, of two requests behind a running generation one waits and one gets 503."""
    settings = make_settings(tmp_path, queue_size=1)
    generator = BlockingGenerator()
    service = RagService(settings, FakeEmbedder(), generator, Index.open(settings.index_path))
    with TestClient(create_app(settings, service=service)) as client:
        first, out1 = run_in_thread(lambda: chat(client, QUESTION))
        try:
            assert generator.started.wait(TIMEOUT)
            second, out2 = run_in_thread(lambda: chat(client, QUESTION))
            third, out3 = run_in_thread(lambda: chat(client, QUESTION))
            # One of them is turned away at once, while the first generation still runs.
            for _ in range(int(TIMEOUT / 0.01)):
                if "response" in out2 or "response" in out3:
                    break
                threading.Event().wait(0.01)
            assert first.is_alive()
            refused = out2.get("response") or out3.get("response")
            assert refused is not None, "neither waiting request was turned away"
            assert_error(refused, 503, "server_busy")
        finally:
            generator.release.set()
            for thread in (first, second, third):
                thread.join(TIMEOUT)
        assert out1["response"].status_code == 200
        assert sorted([out2["response"].status_code, out3["response"].status_code]) == [200, 503]


class SlowGenerator(FakeGenerator):
    """The fake generator, writing one piece every 50 ms, like a real model on a CPU."""

    def stream(self, messages: Sequence[dict[str, str]], max_tokens: int,
               temperature: float) -> Iterator[str | Completion]:
        for item in super().stream(messages, max_tokens, temperature):
            threading.Event().wait(0.05)
            yield item


async def disconnect_after_first_event(app: FastAPI, body: bytes) -> list[dict[str, Any]]:
    """Drive one streaming request over raw ASGI, as uvicorn does, and hang up after the first event."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
             "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"host", b"testserver")],
             "client": ("testclient", 50000), "server": ("testserver", 80)}
    first_event = anyio.Event()
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await first_event.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            first_event.set()

    await app(scope, receive, send)
    return sent


def test_client_hanging_up_mid_stream_frees_the_generation_slot(tmp_path: Path) -> None:
    """When the client hangs up, Starlette abandons the event iterator, which a reference cycle would keep
    alive until the cyclic garbage collector runs; ``StreamSession.close`` (rag/server/api.py) frees the gate
    slot and the service's generation lock at once, so with ``queue_size=0`` the next chat is not a 503."""
    settings = make_settings(tmp_path, queue_size=0)
    service = RagService(settings, FakeEmbedder(), SlowGenerator(), Index.open(settings.index_path))
    app = create_app(settings, service=service)
    body = json.dumps({"messages": [{"role": "user", "content": QUESTION}], "stream": True}).encode()

    async def scenario() -> tuple[list[dict[str, Any]], httpx.Response]:
        with anyio.fail_after(TIMEOUT):
            async with app.router.lifespan_context(app):
                sent = await disconnect_after_first_event(app, body)
                await anyio.sleep(0.3)  # longer than the rest of the slow generation
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                    after = await http.post("/v1/chat/completions",
                                            json={"messages": [{"role": "user", "content": QUESTION}]})
                return sent, after

    enabled = gc.isenabled()
    gc.disable()  # make the outcome independent of when the cyclic collector happens to run
    try:
        sent, after = anyio.run(scenario)
    finally:
        if enabled:
            gc.enable()
    assert sent[0]["status"] == 200
    assert not any(m["type"] == "http.response.body" and b"[DONE]" in m.get("body", b"") for m in sent)
    assert after.status_code == 200, after.text
    assert service.generation_lock.locked() is False


# --- documents ----------------------------------------------------------------------------------------
MARS_TEXT = "火星基地报告\n火星基地的预算是一百亿元，由星际委员会批准。\n"
GBK_TEXT = "山海县教育报告\n山海县共有学校四十二所，教师一千名。\n"


def document_ids(client: TestClient) -> list[str]:
    body = client.get("/v1/documents").json()
    assert body["object"] == "list"
    return [d["id"] for d in body["data"]]


def test_list_documents(client: TestClient, settings: Settings) -> None:
    response = client.get("/v1/documents")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"object", "data"}
    index = Index.open(settings.index_path)
    assert sorted(d["id"] for d in body["data"]) == sorted(index.documents)
    for d in body["data"]:
        assert set(d) == DOCUMENT_KEYS
        assert d["chunks"] == index.documents[d["id"]].chunks
        assert d["sha256"] == hashlib.sha256((settings.corpus_dir / d["id"]).read_bytes()).hexdigest()


def test_document_text_is_what_offsets_index(client: TestClient, settings: Settings) -> None:
    hit = client.post("/v1/search", json={"query": "阳山县排名", "top_k": 1}).json()["results"][0]

    response = client.get(f"/v1/documents/{hit['doc_id']}/text")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == DOCUMENT_KEYS | {"object", "text", "pages"}
    assert body["pages"] == []  # a text file has no pages
    assert body["object"] == "document.text" and body["id"] == hit["doc_id"]
    assert body["text"] == (settings.corpus_dir / hit["doc_id"]).read_text("utf-8").lstrip("\ufeff")
    assert body["characters"] == len(body["text"])
    assert clean(body["text"][hit["start"]:hit["end"]]) == hit["text"]
    assert_error(client.get("/v1/documents/nope.txt/text"), 404, "not_found_error")


@pytest.mark.parametrize(("name", "text", "encoding", "query"), [
    ("mars.txt", MARS_TEXT, "utf-8", "火星基地的预算"),
    ("山海.txt", GBK_TEXT, "gbk", "山海县共有学校"),
])
def test_upload_is_listed_searchable_and_stored(fresh: tuple[TestClient, Settings], name: str, text: str,
                                                encoding: str, query: str) -> None:
    client, settings = fresh
    data = text.encode(encoding)

    response = upload(client, name, data)

    assert response.status_code == 201, response.text
    doc = response.json()
    assert set(doc) == DOCUMENT_KEYS
    assert doc["id"] == name
    assert doc["title"] == text.split("\n")[0]
    assert doc["characters"] == len(text)
    assert doc["chunks"] >= 1
    assert doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert datetime.fromisoformat(doc["ingested_at"]).tzinfo is not None
    assert (settings.corpus_dir / name).read_bytes() == data

    listed = client.get("/v1/documents").json()["data"]
    assert [d for d in listed if d["id"] == name] == [doc]
    assert len(listed) == 6
    assert client.get("/health").json()["index"]["documents"] == 6

    hits = client.post("/v1/search", json={"query": query, "top_k": 1}).json()["results"]
    assert hits[0]["doc_id"] == name
    assert_span(settings.corpus_dir, hits[0])
    assert name in Index.open(settings.index_path).documents


def test_uploaded_document_answers_questions(fresh: tuple[TestClient, Settings]) -> None:
    client, settings = fresh
    assert chat(client, UNANSWERABLE).json()["refused"] is True
    assert upload(client, "mars.txt", MARS_TEXT.encode()).status_code == 201
    body = chat(client, UNANSWERABLE).json()
    assert body["refused"] is False
    assert body["citations"][0]["doc_id"] == "mars.txt"
    assert_span(settings.corpus_dir, body["citations"][0])


def test_upload_into_a_service_without_index_makes_it_ready(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, with_index=False)
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        assert client.get("/health").json()["status"] == "not_ready"
        assert upload(client, "mars.txt", MARS_TEXT.encode()).status_code == 201
        health = client.get("/health").json()
        assert health["status"] == "ready"
        assert health["index"]["documents"] == 1
        assert client.post("/v1/search", json={"query": "火星"}).json()["results"][0]["doc_id"] == "mars.txt"


@pytest.mark.parametrize(("name", "expected"), [
    ("../../etc/evil.txt", "evil.txt"),
    ("..\\x.txt", "x.txt"),
    ("../../../../../../../../tmp/evil2.txt", "evil2.txt"),
])
def test_upload_names_cannot_escape_the_corpus(fresh: tuple[TestClient, Settings], tmp_path: Path, name: str,
                                               expected: str) -> None:
    client, settings = fresh
    before = files_under(tmp_path, settings.index_dir)

    response = upload(client, name, MARS_TEXT.encode())

    assert response.status_code == 201, response.text
    assert response.json()["id"] == expected
    assert files_under(tmp_path, settings.index_dir) - before == {settings.corpus_dir / expected}
    assert (settings.corpus_dir / expected).read_bytes() == MARS_TEXT.encode()
    assert not (settings.corpus_dir.parent.parent / "etc").exists()
    assert expected in document_ids(client)


@pytest.mark.parametrize("name", ["report.doc", "setup.exe", "notes.txt.exe", "README"])
def test_upload_rejects_unknown_extensions(fresh: tuple[TestClient, Settings], tmp_path: Path, name: str) -> None:
    client, settings = fresh
    before = files_under(tmp_path, settings.index_dir)
    message = assert_error(upload(client, name, MARS_TEXT.encode()), 400, "invalid_request_error")
    assert name in message
    assert files_under(tmp_path, settings.index_dir) == before
    assert len(document_ids(client)) == 5


@pytest.mark.parametrize("data", [b"", b"  \n\n \t"])
def test_upload_rejects_empty_files(fresh: tuple[TestClient, Settings], data: bytes) -> None:
    client, settings = fresh
    assert "empty" in assert_error(upload(client, "empty.txt", data), 422, "document_error")
    assert not (settings.corpus_dir / "empty.txt").exists()
    assert len(document_ids(client)) == 5


def test_upload_size_limit(fresh: tuple[TestClient, Settings]) -> None:
    client, settings = fresh
    limit = settings.max_upload_bytes
    too_big = ("阳" * (limit // 3 + 1)).encode()
    assert len(too_big) > limit
    assert "4,096" in assert_error(upload(client, "big.txt", too_big), 413, "invalid_request_error")
    assert not (settings.corpus_dir / "big.txt").exists()

    exact = b"a" * (limit - 1) + b"\n"
    assert upload(client, "exact.txt", exact).status_code == 201


def test_upload_requires_a_file_field(fresh: tuple[TestClient, Settings]) -> None:
    client, _ = fresh
    response = client.post("/v1/documents", files={"other": ("x.txt", b"abc", "text/plain")})
    assert "file" in assert_error(response, 400, "invalid_request_error")


def test_failed_upload_leaves_the_index_unchanged(fresh: tuple[TestClient, Settings]) -> None:
    client, settings = fresh
    listed_before = client.get("/v1/documents").json()
    on_disk = Index.open(settings.index_path)
    version = index_version(settings.index_path)

    response = upload(client, "bad.txt", b"\xff\xfe\xfa\xff\x80 not text \xff")

    assert "bad.txt" in assert_error(response, 422, "document_error")
    assert client.get("/v1/documents").json() == listed_before
    after = Index.open(settings.index_path)
    assert set(after.documents) == set(on_disk.documents)
    assert after.chunk_count() == on_disk.chunk_count()
    assert index_version(settings.index_path) == version != ""
    assert not (settings.corpus_dir / "bad.txt").exists()
    assert client.get("/health").json()["index"] == {"documents": 5, "chunks": on_disk.chunk_count()}


def test_delete_document(fresh: tuple[TestClient, Settings]) -> None:
    client, settings = fresh
    assert upload(client, "mars.txt", MARS_TEXT.encode()).status_code == 201

    response = client.delete("/v1/documents/mars.txt")

    assert response.status_code == 200
    assert response.json() == {"id": "mars.txt", "object": "document", "deleted": True}
    assert "mars.txt" not in document_ids(client)
    results = client.post("/v1/search", json={"query": "火星基地的预算", "top_k": 100}).json()["results"]
    assert "mars.txt" not in {r["doc_id"] for r in results}
    assert not (settings.corpus_dir / "mars.txt").exists()
    assert "mars.txt" not in Index.open(settings.index_path).documents
    assert chat(client, UNANSWERABLE).json()["refused"] is True


def test_delete_a_corpus_document(fresh: tuple[TestClient, Settings]) -> None:
    client, settings = fresh
    assert client.delete(f"/v1/documents/{DOC0}").status_code == 200
    assert DOC0 not in document_ids(client)
    assert not (settings.corpus_dir / DOC0).exists()
    index = Index.open(settings.index_path)
    assert DOC0 not in index.documents
    assert client.get("/health").json()["index"] == {"documents": 4, "chunks": index.chunk_count()}


def test_delete_unknown_document_is_404(fresh: tuple[TestClient, Settings]) -> None:
    client, _ = fresh
    assert "nope.txt" in assert_error(client.delete("/v1/documents/nope.txt"), 404, "not_found_error")
    assert len(document_ids(client)) == 5


# --- an index of another format -----------------------------------------------------------------------
def test_an_index_of_an_older_format_is_served_as_an_error_that_says_rebuild(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = settings.index_path / "corpus.sqlite"
    with contextlib.closing(sqlite3.connect(store)) as db:
        db.execute("PRAGMA user_version = 1")
    before = store_contents(store)
    message = (f"the index at {settings.index_path} has an older format (schema 1; this version of rag reads "
               "schema 2); rebuild it with `rag ingest --rebuild`")
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        health = client.get("/health").json()
        assert health["status"] == "not_ready"
        assert health["error"] == {"type": "index_outdated", "message": message}
        assert assert_error(client.post("/v1/search", json={"query": "阳山县"}), 503, "index_outdated") == message
        assert assert_error(chat(client, "阳山县排名第几？"), 503, "index_outdated") == message
        # an upload would build a new index over it: refused the same way, the old store untouched
        assert assert_error(upload(client, "mars.txt", MARS_TEXT.encode()), 503, "index_outdated") == message
    assert store_contents(store) == before and not (settings.corpus_dir / "mars.txt").exists()


def store_contents(store: Path) -> tuple[int, list[str]]:
    """The store's schema version and every row: its logical content. (Not its bytes: the store is in WAL
    mode, and a checkpoint by whichever connection closes last rewrites the file without changing a row.)"""
    with contextlib.closing(sqlite3.connect(store)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0]), list(db.iterdump())
