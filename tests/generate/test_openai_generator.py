"""The OpenAI-compatible generator over real HTTP on loopback: a port with no server (down), a server that
never answers (slow), a stand-in that stalls mid-stream or answers an error, and the service and HTTP layer
turning each into our error envelope. The real server (llama-cpp-python's) is in ``test_llama_server.py``."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag.config import Settings
from rag.errors import LLMError, LLMTimeout, LLMUnavailable
from rag.generate import BACKENDS, Completion, GenerationSlots, OpenAIGenerator, build_generator
from rag.ingest import ingest_paths
from rag.server.app import create_app
from tests.fakes import FAKE_EMBEDDER, FakeEmbedder

REPO = Path(__file__).resolve().parents[2]
QUESTION = "阳山县在清远市八个县中排名第几？"
CHAT = [{"role": "user", "content": "你好"}]

Behaviour = Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]


# --- loopback servers -----------------------------------------------------------------------------------
@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel completes them) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


class StandIn:
    """A small OpenAI-style HTTP server on loopback whose behaviour a test chooses; records request bodies."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.release = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.bodies.append({**body, "_auth": self.headers.get("Authorization")})
                behaviour(self, body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in() -> Iterator[Callable[[Behaviour], StandIn]]:
    servers: list[StandIn] = []

    def start(behaviour: Behaviour) -> StandIn:
        servers.append(StandIn(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def reply(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def sse_head(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()


def event(handler: BaseHTTPRequestHandler, payload: Any) -> None:
    handler.wfile.write(f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode())
    handler.wfile.flush()


def delta(text: str) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}


def answer_with(handler: BaseHTTPRequestHandler, body: dict[str, Any], text: str) -> None:
    """Reply ``text`` as the request asked: one JSON object, or events with a usage chunk."""
    usage = {"prompt_tokens": 9, "completion_tokens": len(text)}
    if not body["stream"]:
        reply(handler, 200, {"choices": [{"index": 0, "message": {"content": text}}], "usage": usage})
        return
    sse_head(handler)
    event(handler, delta(text))
    event(handler, {"choices": [], "usage": usage})
    handler.wfile.write(b"data: [DONE]\n\n")


# --- the generator ------------------------------------------------------------------------------------
def test_down_server_is_unavailable_at_once(closed_port: int) -> None:
    generator = OpenAIGenerator(f"http://127.0.0.1:{closed_port}/v1", "m", timeout=30)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match=f"cannot reach the LLM server at http://127.0.0.1:{closed_port}"):
        generator.generate(CHAT, 8, 0.0)
    with pytest.raises(LLMUnavailable):
        list(generator.stream(CHAT, 8, 0.0))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("streaming", [False, True])
def test_silent_server_times_out(silent_port: int, streaming: bool) -> None:
    generator = OpenAIGenerator(f"http://127.0.0.1:{silent_port}/v1", "m", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(LLMTimeout, match=r"sent nothing for 0\.5 s"):
        list(generator.stream(CHAT, 8, 0.0)) if streaming else generator.generate(CHAT, 8, 0.0)
    assert 0.4 < time.monotonic() - started < 3


def test_generate_sends_the_request_and_reads_text_and_usage(stand_in: Callable[[Behaviour], StandIn]) -> None:
    def answer(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        reply(handler, 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "第三。"}}],
                             "usage": {"prompt_tokens": 17, "completion_tokens": 3, "total_tokens": 20}})

    server = stand_in(answer)
    completion = OpenAIGenerator(server.url + "/", "qwen", api_key="k1", timeout=5).generate(CHAT, 12, 0.2)
    assert completion == Completion("第三。", 17, 3)
    assert server.bodies == [{"model": "qwen", "messages": CHAT, "max_tokens": 12, "temperature": 0.2,
                              "stream": False, "_auth": "Bearer k1"}]


def test_stream_yields_deltas_then_usage_from_the_last_chunk(stand_in: Callable[[Behaviour], StandIn]) -> None:
    def answer(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        sse_head(handler)
        event(handler, {"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        for piece in ("排名", "第三", "。"):
            event(handler, delta(piece))
        event(handler, {"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 4}})
        handler.wfile.write(b"data: [DONE]\n\n")

    server = stand_in(answer)
    items = list(OpenAIGenerator(server.url, "qwen", timeout=5).stream(CHAT, 12, 0.0))
    assert items == ["排名", "第三", "。", Completion("排名第三。", 40, 4)]
    assert server.bodies[0]["stream"] is True and server.bodies[0]["stream_options"] == {"include_usage": True}
    assert server.bodies[0]["_auth"] is None


def test_stream_without_usage_counts_pieces(stand_in: Callable[[Behaviour], StandIn]) -> None:
    def answer(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        sse_head(handler)
        for piece in ("一", "二"):
            event(handler, delta(piece))
        handler.wfile.write(b"data: [DONE]\n\n")

    items = list(OpenAIGenerator(stand_in(answer).url, "m", timeout=5).stream(CHAT, 12, 0.0))
    assert items[-1] == Completion("一二", 0, 2)


def test_stream_that_stalls_after_the_first_token_times_out(stand_in: Callable[[Behaviour], StandIn]) -> None:
    server: StandIn

    def stall(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        sse_head(handler)
        event(handler, delta("排名"))
        server.release.wait(10)

    server = stand_in(stall)
    stream = OpenAIGenerator(server.url, "m", timeout=0.5).stream(CHAT, 12, 0.0)
    assert next(stream) == "排名"
    with pytest.raises(LLMTimeout):
        next(stream)


def test_stream_that_trickles_past_the_deadline_times_out(stand_in: Callable[[Behaviour], StandIn]) -> None:
    """Each piece arrives within the read timeout, but the whole answer may not take longer than it."""
    server: StandIn

    def trickle(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        sse_head(handler)
        for _ in range(40):
            event(handler, delta("字"))
            if server.release.wait(0.1):
                return

    server = stand_in(trickle)
    started = time.monotonic()
    with pytest.raises(LLMTimeout, match="did not finish the answer within 0.5 s"):
        list(OpenAIGenerator(server.url, "m", timeout=0.5).stream(CHAT, 12, 0.0))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(("status", "error"), [(500, LLMError), (404, LLMError), (503, LLMUnavailable),
                                                (429, LLMUnavailable), (504, LLMTimeout)])
def test_server_errors_are_typed_and_quote_the_server(stand_in: Callable[[Behaviour], StandIn], status: int,
                                                      error: type[Exception]) -> None:
    server = stand_in(lambda handler, body: reply(handler, status, {"error": {"message": "model 'x' not found"}}))
    generator = OpenAIGenerator(server.url, "x", timeout=5)
    with pytest.raises(error, match=f"answered {status}: model 'x' not found"):
        generator.generate(CHAT, 8, 0.0)
    with pytest.raises(error, match=f"answered {status}: model 'x' not found"):
        list(generator.stream(CHAT, 8, 0.0))


def test_error_event_mid_stream_and_garbage_are_llm_errors(stand_in: Callable[[Behaviour], StandIn]) -> None:
    def error_event(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        sse_head(handler)
        event(handler, delta("排"))
        event(handler, {"error": {"message": "out of memory"}})

    with pytest.raises(LLMError, match="failed mid-answer: out of memory"):
        list(OpenAIGenerator(stand_in(error_event).url, "m", timeout=5).stream(CHAT, 8, 0.0))
    garbage = stand_in(lambda handler, body: reply(handler, 200, ["not", "an", "object"]))
    with pytest.raises(LLMError, match="not an object"):
        OpenAIGenerator(garbage.url, "m", timeout=5).generate(CHAT, 8, 0.0)


# --- settings and slots -------------------------------------------------------------------------------
def test_settings_select_the_remote_generator() -> None:
    settings = Settings(llm_backend="openai", llm_base_url="http://127.0.0.1:9/v1", llm_model="qwen",
                        llm_timeout=7, llm_connect_timeout=2)
    generator = build_generator(settings)
    assert isinstance(generator, OpenAIGenerator)
    assert (generator.name, generator.url, generator.timeout) == ("qwen", "http://127.0.0.1:9/v1/chat/completions", 7)
    assert set(BACKENDS) == {"llama-cpp", "openai"}
    assert Settings(llm_backend="openai").resolved_llm_model == "qwen2.5-coder-1.5b-instruct-q4_k_m"


def test_parallel_generations_default_by_backend() -> None:
    assert Settings().parallel_generations == 1
    assert Settings(llm_backend="openai").parallel_generations == 4
    assert Settings(llm_backend="openai", max_parallel_generations=2).parallel_generations == 2
    assert Settings(max_parallel_generations=3).parallel_generations == 3


def test_slots_admit_size_at_once() -> None:
    slots = GenerationSlots(2)
    with slots:
        assert not slots.locked()
        with slots:
            assert slots.locked() and slots.in_use == 2
            assert not slots._free.acquire(timeout=0.05)  # a third waits
    assert slots.in_use == 0 and not slots.locked()
    with pytest.raises(ValueError, match="size is 0"):
        GenerationSlots(0)


# --- through the service and the HTTP layer -----------------------------------------------------------
def remote_settings(tmp_path: Path, url: str, **overrides: Any) -> Settings:
    settings = Settings(llm_backend="openai", llm_base_url=url, llm_model="m",
                        index_dir=tmp_path / "index", corpus_dir=REPO / "corpus", models_dir=tmp_path / "models",
                        **overrides)
    index, _ = ingest_paths([settings.corpus_dir], settings, FakeEmbedder(), None)
    index.close()
    return settings


def ask(client: TestClient, stream: bool = False) -> Any:
    return client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}],
                                                     "stream": stream})


@pytest.mark.parametrize("stream", [False, True])
def test_http_down_server_is_503_in_the_envelope(tmp_path: Path, closed_port: int, stream: bool) -> None:
    settings = remote_settings(tmp_path, f"http://127.0.0.1:{closed_port}/v1")
    with TestClient(create_app(settings, FAKE_EMBEDDER)) as client:
        response = ask(client, stream)
        assert client.get("/health").json()["status"] == "ready"  # the rest of the service is unaffected
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["error"]["type"] == "llm_unavailable"
    assert f"127.0.0.1:{closed_port}" in response.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_http_silent_server_is_504_in_the_envelope(tmp_path: Path, silent_port: int, stream: bool) -> None:
    settings = remote_settings(tmp_path, f"http://127.0.0.1:{silent_port}/v1", llm_timeout=0.5)
    with TestClient(create_app(settings, FAKE_EMBEDDER)) as client:
        started = time.monotonic()
        response = ask(client, stream)
        assert time.monotonic() - started < 3
    assert response.status_code == 504
    assert response.json() == {"error": {"type": "llm_timeout", "message": response.json()["error"]["message"]}}


def test_http_stall_mid_stream_ends_with_an_error_event(tmp_path: Path,
                                                        stand_in: Callable[[Behaviour], StandIn]) -> None:
    server: StandIn

    def stall_after_warm_up(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if not body["stream"]:  # the warm-up at start-up
            answer_with(handler, body, "好")
            return
        sse_head(handler)
        event(handler, delta("阳山县在清远市"))  # longer than the script converter holds back
        server.release.wait(10)

    server = stand_in(stall_after_warm_up)
    settings = remote_settings(tmp_path, server.url, llm_timeout=0.5)
    with TestClient(create_app(settings, FAKE_EMBEDDER)) as client:
        response = ask(client, stream=True)
    assert response.status_code == 200
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    # "阳山县在清远市" only repeats the question: the service sends no unverified text before the error.
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == ""
    assert events[-1]["error"]["type"] == "llm_timeout"
    assert "[DONE]" not in response.text


def test_http_answers_in_parallel_up_to_the_setting(tmp_path: Path,
                                                    stand_in: Callable[[Behaviour], StandIn]) -> None:
    """Two answers must be generated at the same time: the stand-in holds each until both have arrived."""
    both = threading.Barrier(2, timeout=5)

    def together(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if body["max_tokens"] > 1:  # not the warm-up
            both.wait()
        answer_with(handler, body, "阳山县排名第三。")

    settings = remote_settings(tmp_path, stand_in(together).url, max_parallel_generations=2, queue_size=0)
    with TestClient(create_app(settings, FAKE_EMBEDDER)) as client:
        results: list[Any] = []
        threads = [threading.Thread(target=lambda: results.append(ask(client))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
    assert all(r.json()["usage"] == {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17}
               for r in results)
