"""Regression tests for issue #13's HTTP and service defects, each with the request that showed it:
uploads that froze every route, cross-site writes and foreign Host headers, half-written documents,
lost updates between processes, lone surrogates, unbounded bodies, and the smaller items."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rag.config import Settings
from rag.generate import Completion
from rag.index import DocRecord, DocumentEntry, Index
from rag.index.lock import IndexLock
from rag.ingest import ingest_paths
from rag.server.app import create_app
from rag.service import RagService
from tests.fakes import FAKE_PARTS, FakeEmbedder, FakeGenerator

REPO = Path(__file__).resolve().parents[2]
QUESTION = "阳山县在清远市八个县中排名第几？"
MARS = "火星基地报告\n火星基地的预算是一百亿元，由星际委员会批准。\n".encode()
TIMEOUT = 10.0
LOCAL = "127.0.0.1,localhost,::1"


# --- helpers --------------------------------------------------------------------------------------------
def make_settings(root: Path, **overrides: Any) -> Settings:
    """Fakes, a private copy of the sample corpus, and an index built from it."""
    corpus = root / "corpus"
    shutil.copytree(REPO / "corpus", corpus)
    settings = Settings(**{"index_dir": root / "index",
                           "corpus_dir": corpus, "models_dir": root / "models",
                           "allowed_hosts": LOCAL + ",testserver", **overrides})
    index, _ = ingest_paths([corpus], settings, FakeEmbedder(), None)
    return settings


def service_with(settings: Settings, embedder: Any = None, generator: Any = None) -> RagService:
    return RagService(settings, embedder or FakeEmbedder(), generator or FakeGenerator(),
                      Index.open(settings.index_path))


def upload(client: TestClient, name: str, data: bytes, **kwargs: Any) -> httpx.Response:
    return client.post("/v1/documents", files={"file": (name, data, "text/plain")}, **kwargs)


def chat(client: TestClient, content: Any, **kwargs: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}]}, **kwargs)


def assert_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and body["error"]["type"] == kind, body
    assert "Traceback" not in response.text
    return str(body["error"]["message"])


def listed(client: TestClient) -> set[str]:
    return {d["id"] for d in client.get("/v1/documents").json()["data"]}


def on_disk(settings: Settings) -> set[str]:
    return set(Index.open(settings.index_path).documents)


def corpus_files(settings: Settings) -> set[str]:
    return {p.name for p in settings.corpus_dir.iterdir()}


def doc(n: int) -> bytes:
    return f"第{n}号文件\n第{n}号文件记载青松县第{n}中学的校舍面积为{n}千平方米。\n".encode()


class BlockingEmbedder(FakeEmbedder):
    """The fake embedder; embedding documents for the index writer waits until the test releases it (the
    answer path, which embeds sentences too, does not wait)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if threading.current_thread().name != "index-writer":
            return super().embed_documents(texts)
        self.started.set()
        if not self.release.wait(TIMEOUT * 3):
            raise RuntimeError("the test never released the embedder")
        return super().embed_documents(texts)


def in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["response"] = fn()
        except BaseException as exc:  # reported by the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def wait_for(condition: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- 1. one upload froze everything ---------------------------------------------------------------------
def test_reads_answer_while_uploads_wait_and_the_queue_turns_the_rest_away(tmp_path: Path) -> None:
    """45 uploads behind one slow one used to hold every worker thread: health, models, documents, search
    and chat timed out. Now uploads queue off the request threads, and past the queue get 503."""
    settings = make_settings(tmp_path, upload_queue_size=3, upload_wait_seconds=0.1)
    embedder = BlockingEmbedder()
    with TestClient(create_app(settings, service=service_with(settings, embedder))) as client:
        threads = [in_thread(lambda: upload(client, "u0.txt", doc(0)))]
        try:
            assert embedder.started.wait(TIMEOUT)  # the first upload is being embedded; 44 more arrive
            threads += [in_thread(lambda n=n: upload(client, f"u{n}.txt", doc(n))) for n in range(1, 45)]
            for thread, _ in threads:
                thread.join(TIMEOUT)  # each answers at once: 202 or 503, none waits for the write
            assert not any(t.is_alive() for t, _ in threads)
            reads = [client.get("/health"), client.get("/v1/models"), client.get("/v1/documents"),
                     client.post("/v1/search", json={"query": "阳山县排名"}), chat(client, QUESTION)]
            assert [r.status_code for r in reads] == [200] * 5
            assert reads[0].json()["index"]["documents"] == 5
        finally:
            embedder.release.set()
        responses = [out["response"] for _, out in threads]
        accepted = [r for r in responses if r.status_code == 202]
        busy = [r for r in responses if r.status_code == 503]
        assert len(accepted) == 4  # one running, three waiting
        assert len(busy) == 41
        for r in busy:
            assert "busy" in assert_error(r, 503, "server_busy")
            assert int(r.headers["retry-after"]) > 0
        names = set()
        for r in accepted:
            job = r.json()
            assert r.headers["location"] == f"/v1/jobs/{job['id']}"
            wait_for(lambda job=job: client.get(f"/v1/jobs/{job['id']}").json()["status"] == "done")
            done = client.get(f"/v1/jobs/{job['id']}").json()
            assert done["error"] is None and done["progress"]["done"] == done["progress"]["total"] > 0
            names.add(done["document"]["id"])
        assert listed(client) == on_disk(settings) == names | set(os.listdir(REPO / "corpus"))


def test_upload_contract_201_when_quick_202_with_a_job_when_not(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, upload_wait_seconds=0.2)
    embedder = BlockingEmbedder()
    with TestClient(create_app(settings, service=service_with(settings, embedder))) as client:
        thread, out = in_thread(lambda: upload(client, "slow.txt", MARS))
        assert embedder.started.wait(TIMEOUT)
        thread.join(TIMEOUT)
        response = out["response"]
        assert response.status_code == 202, response.text
        job = response.json()
        assert set(job) == {"id", "status", "progress", "document", "error"}
        assert job["status"] == "running" and job["document"] is None and job["error"] is None
        assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"
        embedder.release.set()
        wait_for(lambda: client.get(f"/v1/jobs/{job['id']}").json()["status"] == "done")
        done = client.get(f"/v1/jobs/{job['id']}").json()
        assert done["document"]["id"] == "slow.txt" and done["progress"]["total"] >= 1
        assert "slow.txt" in listed(client)

        quick = upload(client, "quick.txt", doc(1))  # the embedder is released: done within the wait
        assert quick.status_code == 201 and quick.json()["id"] == "quick.txt"
        assert_error(client.get("/v1/jobs/nope"), 404, "not_found_error")


def test_upload_over_the_chunk_limit_is_refused_before_embedding(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_upload_chunks=2, chunk_max_chars=50, chunk_min_chars=0)
    embedder = FakeEmbedder()
    calls: list[int] = []
    original = embedder.embed_documents
    embedder.embed_documents = lambda texts: calls.append(len(texts)) or original(texts)  # type: ignore[method-assign]
    big = "\n".join(f"第{n}节\n" + "青松县的学校数量持续增加，办学条件不断改善。" * 3 for n in range(6)).encode()
    with TestClient(create_app(settings, service=service_with(settings, embedder))) as client:
        calls.clear()  # the warm-up embeds sentences
        message = assert_error(upload(client, "big.txt", big), 413, "invalid_request_error")
        assert "big.txt" in message and "limit is 2" in message
        assert calls == []
        assert "big.txt" not in corpus_files(settings) | listed(client) | on_disk(settings)


# --- 3. any web page could write; any Host was served ---------------------------------------------------
@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                                     {"Origin": "null"}, {"Origin": "http://127.0.0.1:9999"},
                                     {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}])
def test_cross_site_writes_are_refused(tmp_path: Path, headers: dict[str, str]) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        assert "another site" in assert_error(upload(client, "x.txt", MARS, headers=headers), 403, "permission_error")
        doc0 = sorted(listed(client))[0]
        assert_error(client.delete(f"/v1/documents/{doc0}", headers=headers), 403, "permission_error")
        assert_error(chat(client, QUESTION, headers=headers), 403, "permission_error")
        assert "x.txt" not in corpus_files(settings) | on_disk(settings)
        assert doc0 in on_disk(settings)
        assert client.get("/v1/documents", headers=headers).status_code == 200  # reads carry no change


@pytest.mark.parametrize("headers", [{}, {"Origin": "http://testserver"}, {"Sec-Fetch-Site": "same-origin"},
                                     {"Origin": "http://testserver:80", "Sec-Fetch-Site": "same-origin"}])
def test_same_origin_and_non_browser_writes_pass(tmp_path: Path, headers: dict[str, str]) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        assert upload(client, "x.txt", MARS, headers=headers).status_code == 201
        assert client.delete("/v1/documents/x.txt", headers=headers).status_code == 200


def test_allowed_origins_setting(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, allowed_origins="http://intranet.example:8080")
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        assert upload(client, "x.txt", MARS, headers={"Origin": "http://intranet.example:8080"}).status_code == 201
        assert_error(upload(client, "y.txt", MARS, headers={"Origin": "http://intranet.example"}), 403,
                     "permission_error")


def test_only_allowed_hosts_are_served(tmp_path: Path) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends `Host: evil.example`."""
    settings = make_settings(tmp_path, allowed_hosts=Settings.model_fields["allowed_hosts"].default,
                             host="10.1.2.3")
    with TestClient(create_app(settings, FAKE_PARTS), base_url="http://evil.example") as client:
        assert "evil.example" in assert_error(client.get("/v1/documents"), 400, "invalid_request_error")
        assert_error(client.get("/health"), 400, "invalid_request_error")
    for base in ("http://127.0.0.1:8000", "http://localhost", "http://[::1]:8000", "http://10.1.2.3:8000"):
        with TestClient(create_app(settings, FAKE_PARTS), base_url=base) as client:
            assert client.get("/health").status_code == 200, base


# --- 4. half-written documents --------------------------------------------------------------------------
def test_a_300_byte_file_name_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        before = on_disk(settings)
        name = "长" * 100 + ".txt"
        assert "bytes" in assert_error(upload(client, name, MARS), 400, "invalid_request_error")
        assert on_disk(settings) == listed(client) == before
        assert corpus_files(settings) == before


def test_delete_of_a_document_whose_file_cannot_exist_is_200(tmp_path: Path) -> None:
    """The state the 300-byte upload left: indexed, no file (its name is too long to exist)."""
    settings = make_settings(tmp_path)
    name = "长" * 100 + ".txt"
    index = Index.open(settings.index_path)
    record = DocRecord(name, "长", 3, 0, "0" * 64, "2026-01-01T00:00:00+00:00", str(settings.corpus_dir))
    index.write([DocumentEntry(record, "长长长", "长长长", "长长长", (0, 1, 2), (), np.zeros((0, 64), np.float32), ())])
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        assert name in listed(client)
        response = client.delete(f"/v1/documents/{name}")
        assert response.status_code == 200, response.text
        assert name not in listed(client) | on_disk(settings)


def _failing_save(monkeypatch: pytest.MonkeyPatch) -> None:
    def write(self: Index, *args: Any, **kwargs: Any) -> int:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Index, "write", write)


def test_a_failed_index_save_rolls_back_the_new_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, FAKE_PARTS), raise_server_exceptions=False) as client:
        before = corpus_files(settings)
        _failing_save(monkeypatch)
        message = assert_error(upload(client, "mars.txt", MARS), 500, "storage_error")
        assert "No space left" in message and "mars.txt" in message
        assert corpus_files(settings) == before
        assert "mars.txt" not in listed(client) | on_disk(settings)
        assert not settings.index_path.parent.joinpath(".default.journal").exists()


def test_a_failed_replacement_restores_the_previous_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, FAKE_PARTS), raise_server_exceptions=False) as client:
        assert upload(client, "mars.txt", MARS).status_code == 201
        before = client.get("/v1/documents").json()
        _failing_save(monkeypatch)
        assert_error(upload(client, "mars.txt", doc(7)), 500, "storage_error")
        assert (settings.corpus_dir / "mars.txt").read_bytes() == MARS
        assert client.get("/v1/documents").json() == before
        assert sorted(p.name for p in settings.corpus_dir.iterdir() if p.name.startswith(".")) == []


def test_a_failed_delete_keeps_file_and_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, FAKE_PARTS), raise_server_exceptions=False) as client:
        doc0 = sorted(listed(client))[0]
        data = (settings.corpus_dir / doc0).read_bytes()
        _failing_save(monkeypatch)
        assert_error(client.delete(f"/v1/documents/{doc0}"), 500, "storage_error")
        assert (settings.corpus_dir / doc0).read_bytes() == data
        assert doc0 in listed(client) and doc0 in on_disk(settings)
        assert sorted(p.name for p in settings.corpus_dir.iterdir() if p.name.startswith(".")) == []


# --- 5. lost updates between processes ------------------------------------------------------------------
def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ,
           "RAG_INDEX_DIR": str(settings.index_dir), "RAG_CORPUS_DIR": str(settings.corpus_dir),
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tests.fakes", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=settings.index_dir.parent)


def test_rag_ingest_beside_a_running_server_loses_no_update(tmp_path: Path) -> None:
    """The server used to keep its stale index and save it over `rag ingest`'s document."""
    settings = make_settings(tmp_path)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "cli.txt").write_bytes(doc(3))
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        result = _cli(settings, "ingest", str(extra))
        assert result.returncode == 0, result.stderr
        wait_for(lambda: "cli.txt" in listed(client))  # the server noticed the new generation
        assert upload(client, "web.txt", doc(4)).status_code == 201
        assert {"cli.txt", "web.txt"} <= on_disk(settings)
        assert {"cli.txt", "web.txt"} <= listed(client)
        hits = client.post("/v1/search", json={"query": "第3号文件", "top_k": 1}).json()["results"]
        assert hits[0]["doc_id"] == "cli.txt"


def test_rag_ingest_waits_for_the_writer_and_says_who_holds_the_lock(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with IndexLock(settings.index_path).exclusive():
        result = _cli(settings, "ingest", "--wait", "0.5")
    assert result.returncode == 2
    assert "being written by pid" in result.stderr and f"pid {os.getpid()}" in result.stderr
    assert _cli(settings, "ingest").returncode == 0


def test_uploads_wait_for_a_cli_writer_then_apply_on_top_of_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, upload_wait_seconds=0.2)
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        lock = IndexLock(settings.index_path)
        with lock.exclusive():
            response = upload(client, "web.txt", doc(5))
            assert response.status_code == 202
            # Meanwhile "another process" saves a generation with one more document.
            index = Index.open(settings.index_path)
            extra = tmp_path / "extra"
            extra.mkdir()
            (extra / "cli.txt").write_bytes(doc(6))
            ingest_paths([extra], settings, FakeEmbedder(), index)
        job = response.json()["id"]
        wait_for(lambda: client.get(f"/v1/jobs/{job}").json()["status"] == "done")
        assert {"cli.txt", "web.txt"} <= on_disk(settings) == listed(client)


# --- 6. lone surrogates ---------------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["\udc00\ud800", "阳山\ud800县", [{"type": "text", "text": "\udc00"}]])
def test_lone_surrogates_in_chat_are_400(tmp_path: Path, content: Any) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        body = json.dumps({"messages": [{"role": "user", "content": content}]})  # ASCII: "\udc00" escapes
        response = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        assert "surrogate" in assert_error(response, 400, "invalid_request_error")
        assert chat(client, QUESTION).status_code == 200  # the connection and the service are fine


# --- 7. unbounded bodies, read before the key ------------------------------------------------------------
async def _raw(app: FastAPI, method: str, path: str, headers: dict[str, str], chunks: int,
               chunk: bytes) -> tuple[int, int]:
    """Send a body of ``chunks`` pieces over raw ASGI; returns the status and how many pieces were read."""
    read = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": chunk, "more_body": read < chunks}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "testserver", **headers}.items()],
             "client": ("testclient", 50000), "server": ("testserver", 80)}
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    return status, read


@pytest.mark.parametrize("declared", [True, False])
def test_a_huge_body_is_refused_before_it_is_read(tmp_path: Path, declared: bool) -> None:
    """200 MB to /v1/search used to be read and parsed (420 MB more memory). Declared: refused unread;
    chunked: refused as soon as it passes the limit."""
    settings = make_settings(tmp_path, max_body_bytes=10_000)
    app = create_app(settings, FAKE_PARTS)
    piece = b"x" * 1000
    headers = {"content-type": "application/json", **({"content-length": "200000000"} if declared else {})}
    status, read = anyio.run(_raw, app, "POST", "/v1/search", headers, 200_000, piece)
    assert status == 413
    assert read == (0 if declared else 11)


def test_the_key_is_checked_before_the_body_is_read(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_key="secret")
    app = create_app(settings, FAKE_PARTS)
    headers = {"content-type": "application/json", "content-length": "300000000"}
    assert anyio.run(_raw, app, "POST", "/v1/search", headers, 300_000, b"x" * 1000) == (401, 0)


def test_upload_body_limit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_upload_bytes=2000)
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        big = b"a" * 200_000
        assert "2,000" in assert_error(upload(client, "big.txt", big), 413, "invalid_request_error")
        assert "big.txt" not in corpus_files(settings)


# --- 8. the smaller items -------------------------------------------------------------------------------
def test_two_files_in_one_upload_are_400(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        files = [("file", ("a.txt", MARS, "text/plain")), ("file", ("b.txt", doc(2), "text/plain"))]
        message = assert_error(client.post("/v1/documents", files=files), 400, "invalid_request_error")
        assert "'a.txt'" in message and "'b.txt'" in message
        assert not {"a.txt", "b.txt"} & (corpus_files(settings) | on_disk(settings))


def test_random_high_bytes_are_not_text(tmp_path: Path) -> None:
    """4 KB of random bytes above 0x80 decode as GB18030, as gibberish; they are refused as not text."""
    settings = make_settings(tmp_path)
    rng = np.random.default_rng(13)
    noise = bytes(rng.integers(0x81, 0xFF, 4096, dtype=np.uint8))
    noise.decode("gb18030")  # it does decode
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        assert "noise.txt" in assert_error(upload(client, "noise.txt", noise), 422, "document_error")
        assert "noise.txt" not in corpus_files(settings) | on_disk(settings)
        gbk = "山海县教育报告\n山海县共有学校四十二所，教师一千名。\n".encode("gbk")
        assert upload(client, "gbk.txt", gbk).status_code == 201  # real GBK text still passes


def test_head_health(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path), FAKE_PARTS)) as client:
        response = client.head("/health")
        assert response.status_code == 200 and response.content == b""


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(tmp_path: Path, scheme: str) -> None:
    settings = make_settings(tmp_path, api_key="secret")
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        assert client.get("/v1/models", headers={"Authorization": f"{scheme} secret"}).status_code == 200
        assert_error(client.get("/v1/models", headers={"Authorization": f"{scheme} wrong"}), 401,
                     "authentication_error")


class CountingSlowGenerator(FakeGenerator):
    """Writes one piece every 50 ms and counts the pieces it produced."""

    def __init__(self) -> None:
        super().__init__(reply="阳山县在清远市八个县中排名第三，获得优秀等次，成绩来之不易，值得继续保持。" * 3)
        self.pieces = 0

    def stream(self, messages: Sequence[dict[str, str]], max_tokens: int,
               temperature: float) -> Iterator[str | Completion]:
        for item in super().stream(messages, 200, temperature):
            time.sleep(0.05)
            self.pieces += 1
            yield item


def test_a_non_streaming_client_that_hangs_up_stops_its_generation(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, queue_size=0)
    generator = CountingSlowGenerator()
    service = service_with(settings, generator=generator)
    app = create_app(settings, service=service)
    body = json.dumps({"messages": [{"role": "user", "content": QUESTION}]}).encode()
    full = len(generator.generate([], 200, 0).text) // 4 + 2

    async def scenario() -> int:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await anyio.sleep(0.3)  # the client hangs up mid-generation
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            pass

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
                 "query_string": b"", "root_path": "", "client": ("testclient", 50000), "server": ("testserver", 80),
                 "headers": [(b"content-type", b"application/json"), (b"host", b"testserver")]}
        with anyio.fail_after(TIMEOUT):
            async with app.router.lifespan_context(app):
                await app(scope, receive, send)
                await anyio.sleep(0.3)
                return generator.pieces

    pieces = anyio.run(scenario)
    assert 0 < pieces < full / 2, (pieces, full)
    assert service.generation_lock.locked() is False


def test_openapi_documents_400_not_422(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path), FAKE_PARTS)) as client:
        schema = client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            assert "400" in operation["responses"], (method, path)
    upload_responses = schema["paths"]["/v1/documents"]["post"]["responses"]
    assert {"201", "202"} <= set(upload_responses)
    assert "/v1/jobs/{job_id}" in schema["paths"]


def test_no_temporary_files_are_left_in_the_corpus_or_index(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        assert upload(client, "a.txt", MARS).status_code == 201
        assert upload(client, "a.txt", doc(1)).status_code == 201
        assert client.delete("/v1/documents/a.txt").status_code == 200
        assert_error(upload(client, "bad.txt", b"\xff\xfe\x00bin"), 422, "document_error")
    hidden = [p for p in settings.corpus_dir.rglob(".*")]
    assert hidden == []
    assert sorted(p.name for p in settings.index_path.iterdir() if p.name.startswith(".tmp")) == []
    assert sorted(p.name for p in settings.index_dir.iterdir()) == [".default.lock", "default"]


def test_405_names_every_method_of_the_path(tmp_path: Path) -> None:
    """Starlette named only the first route's methods (GET) for /v1/documents, which also takes POST."""
    with TestClient(create_app(make_settings(tmp_path), FAKE_PARTS)) as client:
        assert client.put("/v1/documents").headers["allow"] == "GET, POST"
        assert client.put("/health").headers["allow"] == "GET, HEAD"
        assert client.get("/v1/chat/completions").headers["allow"] == "POST"
        assert client.put("/v1/documents/a.txt/text").headers["allow"] == "GET"
        assert client.put("/v1/documents/a.txt").headers["allow"] == "DELETE"
