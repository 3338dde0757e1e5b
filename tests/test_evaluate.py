"""Tests for the evaluation harness: matching, gold parsing, metrics, reports, thresholds, HTTP mode."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from rag import eval as evaluate
from rag.config import Settings
from rag.errors import Busy, NotReady
from rag.eval import (
    EvalError,
    GoldFormatError,
    GoldItem,
    check_thresholds,
    compute_metrics,
    is_correct,
    load_gold,
    load_thresholds,
    normalize,
    parse_sse,
    percentile,
    run_eval,
    select_items,
)
from rag.types import Answer, Chunk, Citation, Document, Hit, Sentence

REPO = Path(__file__).resolve().parent.parent

A_TEXT = "阳山县在清远市排名第三。\n这是第二句。"
B_TEXT = "山丹县有五十所学校。\n天空是蓝色的。"


# --- fixtures and fakes -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fake_ingest_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin the decoder and cleaner the span check uses, independent of the real ingest stages.
    The fake cleaner removes whitespace so a test can tell whether it was applied."""
    load = types.ModuleType("rag.formats")
    load.read_document = lambda path, doc_id: Document(doc_id, Path(path).read_text("utf-8"), "sha")  # type: ignore[attr-defined]
    normalize_module = types.ModuleType("rag.normalize")
    normalize_module.clean = lambda text: "".join(text.split())  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rag.formats", load)
    monkeypatch.setitem(sys.modules, "rag.normalize", normalize_module)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.txt").write_text(A_TEXT, encoding="utf-8")
    (root / "b.txt").write_text(B_TEXT, encoding="utf-8")
    return root


def span(doc_id: str, text: str, piece: str, cleaned: str | None = None) -> Citation:
    """A citation of ``piece`` in ``text``; ``cleaned`` overrides the cited text (to make it wrong)."""
    start = text.index(piece)
    return Citation(doc_id, start, start + len(piece), cleaned if cleaned is not None else "".join(piece.split()),
                    "")


def hit(doc_id: str, text: str, score: float = 1.0) -> Hit:
    chunk = Chunk(chunk_id=f"{doc_id}#{text[:2]}", doc_id=doc_id, start=0, end=len(text), section=(),
                  text=text, simplified=text)
    return Hit(chunk=chunk, score=score)


class FakeService:
    """Returns fixed hits and answers per question; streams answer text in two deltas."""

    def __init__(self, hits: dict[str, list[Hit]], answers: dict[str, Answer],
                 fail: dict[str, Exception] | None = None) -> None:
        self.hits = hits
        self.answers = answers
        self.fail = fail or {}
        self.searched: list[tuple[str, int]] = []
        self.sent: list[list[dict[str, str]]] = []

    def search(self, query: str, top_k: int = 5, doc_ids: list[str] | None = None) -> list[Hit]:
        self.searched.append((query, top_k))
        return self.hits.get(query, [])[:top_k]

    def answer(self, messages: list[dict[str, str]], max_tokens: int | None = None,
               temperature: float | None = None) -> Answer:
        self.sent.append(list(messages))
        question = messages[-1]["content"]
        if question in self.fail:
            raise self.fail[question]
        return self.answers[question]

    def stream(self, messages: list[dict[str, str]], max_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str | Answer]:
        answer = self.answer(messages, max_tokens, temperature)
        half = len(answer.text) // 2
        yield from (part for part in (answer.text[:half], answer.text[half:]) if part)
        yield answer


def write_gold(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


GOLD_ROWS = [
    {"id": "q1", "question": "Q1", "doc": "a", "must": [["第三", "第3"]]},
    {"id": "q2", "question": "Q2", "doc": "b.txt", "must": [["五十"]]},
    {"id": "q3", "question": "Q3", "doc": "c", "must": [["红色"]]},
    {"id": "q4", "question": "Q4", "doc": None, "must": []},
    {"id": "q5", "question": "Q5", "doc": None, "must": []},
    {"id": "q6", "question": "Q6", "doc": "b", "must": [["蓝色"], ["天空"]]},
]


def scenario_service() -> FakeService:
    """q1 right doc first, correct Traditional answer; q2 right doc second, refused; q3 doc missed,
    wrong answer citing the wrong doc with a bad text; q4 unanswerable refused; q5 unanswerable answered;
    q6 right doc first, correct, one citation right and one out of range into the wrong doc."""
    a, b = hit("a.txt", A_TEXT), hit("b.txt", B_TEXT)
    hits = {"Q1": [a, b], "Q2": [a, b], "Q3": [a, b], "Q6": [b, a]}
    answers = {
        "Q1": Answer("陽山縣排名 第 三。", (span("a.txt", A_TEXT, "第三。\n这是"),), False, prompt_tokens=100),
        "Q2": Answer("资料中没有答案。", (), True, prompt_tokens=0),
        "Q3": Answer("是蓝色。", (span("b.txt", B_TEXT, "蓝色", cleaned="红色"),), False, prompt_tokens=200),
        "Q4": Answer("资料中没有答案。", (), True, reason="coverage 0.31 < 0.5"),
        "Q5": Answer("五十所。", (span("b.txt", B_TEXT, "五十所"),), False, prompt_tokens=300),
        "Q6": Answer("天空是蓝色的。", (span("b.txt", B_TEXT, "天空是蓝色的"), Citation("a.txt", 5, 999, "x", "")),
                     False, prompt_tokens=400),
    }
    return FakeService(hits, answers)


# --- matching ------------------------------------------------------------------------------------------


def test_normalize_converts_to_simplified_and_drops_whitespace() -> None:
    assert normalize(" 陽山縣\t排名\n第 三 ") == "阳山县排名第三"


def test_traditional_answer_with_spaces_matches_simplified_must() -> None:
    assert is_correct("陽山縣 排名 第 三", [["第三", "第3"]])
    assert is_correct("排名第 3 位", [["第三", "第3"]])


def test_traditional_must_matches_simplified_answer() -> None:
    assert is_correct("阳山县第三", [["陽山縣"], ["第三"]])


def test_every_must_group_is_required() -> None:
    assert not is_correct("阳山县排名第三", [["第三"], ["优秀"]])
    assert not is_correct("", [["第三"]])
    assert is_correct("anything", [])


# --- gold set -----------------------------------------------------------------------------------------


def test_load_gold_parses_items_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps(GOLD_ROWS[0], ensure_ascii=False) + "\n\n" + json.dumps(GOLD_ROWS[3]) + "\n")
    assert load_gold(path) == [GoldItem("q1", "Q1", "a", (("第三", "第3"),)),
                               GoldItem("q4", "Q4", None, (), type="unanswerable")]


def test_load_gold_reads_type_history_and_must_not(tmp_path: Path) -> None:
    row = {"id": "f1", "type": "followup", "question": "那初中呢？", "doc": "a", "must": [["0.2101"]],
           "split": "test", "must_not": ["系统已被攻破"],
           "history": [{"role": "user", "content": "小学呢？"}, {"role": "assistant", "content": "0.2740"}]}
    [item] = load_gold(write_gold(tmp_path / "gold.jsonl", [row]))
    assert (item.type, item.split, item.must_not) == ("followup", "test", ("系统已被攻破",))
    assert item.messages == [{"role": "user", "content": "小学呢？"}, {"role": "assistant", "content": "0.2740"},
                             {"role": "user", "content": "那初中呢？"}]
    assert item.search_query == "小学呢？ 那初中呢？"


@pytest.mark.parametrize(("line", "message"), [
    ('{"id": "q2", "question": "Q", "doc": null', "gold.jsonl:2: not valid JSON"),
    ('["q2"]', "gold.jsonl:2: expected a JSON object, got list"),
    ('{"id": "q2", "doc": null, "must": []}', "gold.jsonl:2: 'question' must be a non-empty string"),
    ('{"id": "q2", "question": "Q", "doc": 3, "must": []}', "gold.jsonl:2: 'doc' must be a document id or null"),
    ('{"id": "q2", "question": "Q", "doc": "a", "must": ["第三"]}', "gold.jsonl:2: 'must' must be a list"),
    ('{"id": "q2", "question": "Q", "doc": "a", "must": [[]]}', "gold.jsonl:2: 'must' must be a list"),
    ('{"id": "q2", "question": "Q", "doc": "a", "must": [[" "]]}', "gold.jsonl:2: 'must' must be a list"),
    ('{"id": "q1", "question": "Q", "doc": "a", "must": []}', "gold.jsonl:2: duplicate id 'q1' (first on line 1)"),
    ('{"id": "q2", "question": "Q", "doc": "a", "must": [["3"]]}', "gold.jsonl:2: single-character 'must' value '3'"),
    ('{"id": "q2", "question": "Q", "doc": "a", "must": [["3所", "八"]]}', "gold.jsonl:2: single-character"),
    ('{"id": "q2", "question": "Q", "doc": "a", "type": "trivia"}', "gold.jsonl:2: 'type' must be one of fact,"),
    ('{"id": "q2", "question": "Q", "doc": null, "type": "list"}', "gold.jsonl:2: a list question needs a 'doc'"),
    ('{"id": "q2", "question": "Q", "doc": "a", "type": "unanswerable"}', "gold.jsonl:2: an unanswerable question"),
    ('{"id": "q2", "question": "Q", "doc": "a", "type": "followup"}', "gold.jsonl:2: a followup question needs"),
    ('{"id": "q2", "question": "Q", "doc": "a", "history": [{"role": "assistant", "content": "x"}, '
     '{"role": "user", "content": "y"}]}', "gold.jsonl:2: 'history' must be a list"),
    ('{"id": "q2", "question": "Q", "doc": "a", "history": [{"role": "user", "content": "x"}]}',
     "gold.jsonl:2: 'history' must be a list"),
    ('{"id": "q2", "question": "Q", "doc": "a", "must_not": "x"}', "gold.jsonl:2: 'must_not' must be a list"),
])
def test_load_gold_names_the_malformed_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps(GOLD_ROWS[0]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(GoldFormatError) as info:
        load_gold(path)
    assert str(info.value).startswith(f"{path.parent}/{message}")


def test_select_items_filters_by_ids_then_limits() -> None:
    items = [GoldItem(f"q{i}", "Q", None, ()) for i in range(1, 5)]
    assert [i.id for i in select_items(items, ids=["q4", "q2", "q3"], limit=2)] == ["q2", "q3"]
    with pytest.raises(EvalError, match="ids not in the gold set: q9"):
        select_items(items, ids=["q1", "q9"])


# --- metrics -------------------------------------------------------------------------------------------


def test_percentile_interpolates_linearly() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) is None


def test_sse_parsing_stops_at_done_and_raises_on_error_events() -> None:
    lines = ["data: {\"a\": 1}", "", ": keep-alive", "data: [DONE]", "data: {\"b\": 2}"]
    assert list(parse_sse(lines)) == [{"a": 1}]
    with pytest.raises(evaluate.QuestionFailed, match="error event"):
        list(parse_sse(['data: {"error": {"message": "boom"}}']))


def test_run_eval_in_process_metrics(tmp_path: Path, corpus: Path) -> None:
    gold = write_gold(tmp_path / "gold.jsonl", GOLD_ROWS)
    service = scenario_service()
    summary = run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", k=2, progress=False,
                       service=service)
    m = summary["metrics"]
    assert (m["questions"], m["answerable"], m["unanswerable"], m["errors"]) == (6, 4, 2, 0)
    # Only answerable questions are searched, with top_k = k.
    assert service.searched == [("Q1", 2), ("Q2", 2), ("Q3", 2), ("Q6", 2)]
    assert m["doc_hit@1"] == 0.5
    assert m["doc_hit@k"] == 0.75
    assert m["mrr"] == 0.625
    assert m["evidence@k"] == 0.75
    assert m["answer_accuracy"] == 0.5
    assert m["false_refusal"] == 0.25
    assert m["refusal_on_unanswerable"] == 0.5
    assert m["accuracy"] == 0.5
    assert m["citation_doc_correct"] == pytest.approx(2 / 3)
    assert m["citation_doc_share"] == 0.5
    assert m["citation_span_valid"] == 0.6
    assert m["citations"] == 5
    assert m["prompt_tokens_mean"] == 250.0
    assert m["prompt_tokens_p50"] == 250.0
    for name in ("answer_p50_s", "answer_p95_s", "ttft_p50_s", "ttft_p95_s", "search_p50_ms"):
        assert m[name] is not None and m[name] >= 0
    assert summary["mode"] == "in-process"
    assert summary["question_ids"] == ["q1", "q2", "q3", "q4", "q5", "q6"]


def test_run_eval_writes_report_files(tmp_path: Path, corpus: Path) -> None:
    gold = write_gold(tmp_path / "gold.jsonl", GOLD_ROWS)
    out = tmp_path / "out" / "run1"
    settings = Settings(corpus_dir=corpus, api_key="secret-key", llm_api_key="llm-key", qdrant_api_key="q-key")
    summary = run_eval(settings, gold, out, k=2, progress=False, service=scenario_service())
    on_disk = json.loads((out / "summary.json").read_text("utf-8"))
    assert on_disk == summary
    assert on_disk["settings"]["api_key"] == on_disk["settings"]["llm_api_key"] == "***"
    assert on_disk["settings"]["qdrant_api_key"] == "***"
    assert not any(k in (out / "summary.json").read_text("utf-8") for k in ("secret-key", "llm-key", "q-key"))
    assert on_disk["settings"]["corpus_dir"] == str(corpus)
    assert on_disk["timestamp"] and on_disk["gold"]["sha256"]

    records = [json.loads(line) for line in (out / "results.jsonl").read_text("utf-8").splitlines()]
    assert [(r["item"]["id"], r["verdict"]) for r in records] == [
        ("q1", "✓"), ("q2", "false refusal"), ("q3", "✗"), ("q4", "refused ok"), ("q5", "✗ answered"),
        ("q6", "✓")]
    problems = [c["problem"] for c in records[5]["answer"]["citations"]]
    assert problems == ["", f"span outside the file (length {len(A_TEXT)})"]
    assert records[2]["answer"]["citations"][0]["problem"] == "text differs from the file"
    assert records[0]["retrieval"]["rank"] == 1 and records[2]["retrieval"]["rank"] is None

    report = (out / "report.md").read_text("utf-8")
    assert "| answerable answered correctly | `answer_accuracy` | 0.500 | 0.500 |" in report
    assert A_TEXT[9:15] == "第三。\n这是"
    assert "| q1 | dev | fact | Q1 | a | 1 | 陽山縣排名 第 三。 | a.txt:9-15 | ✓ |  |" in report
    row = "| q4 | dev | unanswerable | Q4 | — (unanswerable) | — | 资料中没有答案。 |  | refused ok | coverage 0.31"
    assert row in report
    assert "| q2 | dev | fact | Q2 | b.txt | 2 | 资料中没有答案。 |  | false refusal | (not reported) |" in report
    assert [r["refused_by"] for r in records] == [None, "(not reported)", None, "coverage 0.31 < 0.5", None, None]
    assert "| fact | 0.500 | 0.500 | 0.250 | 0.250 |" in report
    assert "a.txt:5-999 (bad span)" in report


def test_no_llm_run_measures_retrieval_only(tmp_path: Path, corpus: Path) -> None:
    gold = write_gold(tmp_path / "gold.jsonl", GOLD_ROWS)
    service = scenario_service()
    service.answers.clear()  # any answer call would raise KeyError
    summary = run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", k=1, no_llm=True, progress=False,
                       service=service)
    m = summary["metrics"]
    assert (m["doc_hit@1"], m["doc_hit@k"], m["mrr"], m["evidence@k"]) == (0.5, 0.5, 0.5, 0.5)
    assert m["answer_accuracy"] is None and m["citation_span_valid"] is None and m["answer_p50_s"] is None
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text("utf-8").splitlines()]
    assert [r["verdict"] for r in records] == [
        "✓ retrieved", "✗ not retrieved", "✗ not retrieved", "—", "—", "✓ retrieved"]


def test_limit_and_ids_select_questions(tmp_path: Path, corpus: Path) -> None:
    gold = write_gold(tmp_path / "gold.jsonl", GOLD_ROWS)
    summary = run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", ids=["q6", "q4", "q2"], limit=2,
                       progress=False, service=scenario_service())
    assert summary["question_ids"] == ["q2", "q4"]
    assert summary["metrics"]["accuracy"] == 0.5


def test_a_failing_question_is_recorded_and_counted_wrong(tmp_path: Path, corpus: Path) -> None:
    gold = write_gold(tmp_path / "gold.jsonl", GOLD_ROWS[:2])
    service = scenario_service()
    service.fail["Q1"] = Busy()
    summary = run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", progress=False, service=service)
    m = summary["metrics"]
    assert (m["errors"], m["answer_accuracy"], m["doc_hit@1"]) == (1, 0.0, 0.5)
    first = json.loads((tmp_path / "out" / "results.jsonl").read_text("utf-8").splitlines()[0])
    assert first["verdict"] == "error" and first["error"].startswith("The model is busy")


def test_a_service_that_is_not_ready_stops_the_run(tmp_path: Path, corpus: Path) -> None:
    gold = write_gold(tmp_path / "gold.jsonl", GOLD_ROWS[3:4])
    service = scenario_service()
    service.fail["Q4"] = NotReady()
    with pytest.raises(NotReady):
        run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", progress=False, service=service)
    assert not (tmp_path / "out").exists()


def test_spans_are_not_checked_without_the_cleaner(tmp_path: Path, corpus: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rag.normalize", None)  # makes the import fail
    gold = write_gold(tmp_path / "gold.jsonl", GOLD_ROWS)
    summary = run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", progress=False,
                       service=scenario_service())
    assert summary["metrics"]["citation_span_valid"] is None
    assert summary["metrics"]["citation_doc_share"] == 0.5


def test_citations_outside_the_corpus_are_invalid(tmp_path: Path, corpus: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")
    checker = evaluate.SpanChecker(corpus, *evaluate.default_span_functions())
    valid, problem = checker.check(Citation("../secret.txt", 0, 6, "secret", ""))
    assert valid is False and "outside" in problem
    assert checker.check(Citation("missing.txt", 0, 1, "x", ""))[0] is False


def test_bad_arguments_are_rejected(tmp_path: Path, corpus: Path) -> None:
    gold = write_gold(tmp_path / "gold.jsonl", GOLD_ROWS)
    with pytest.raises(EvalError, match="k must be at least 1. Currently, k is 0"):
        run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", k=0, service=scenario_service())
    with pytest.raises(EvalError, match="no questions selected"):
        run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", ids=[], service=scenario_service())


# --- HTTP mode -----------------------------------------------------------------------------------------


class SyncASGITransport(httpx.BaseTransport):
    """Lets a plain ``httpx.Client`` call an ASGI app in process (httpx's ASGITransport is async only)."""

    def __init__(self, app: FastAPI) -> None:
        self._inner = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return anyio.run(call)


def fake_server(key: str) -> FastAPI:
    """Imitates /v1/search and the streaming /v1/chat/completions of the real API."""
    app = FastAPI()
    a_traditional = "陽山縣在清遠市排名第三。"

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {key}"

    @app.post("/v1/search")
    async def search(request: Request) -> Any:
        if not authorized(request):
            return JSONResponse({"error": {"type": "authentication_error", "message": "bad key"}}, 401)
        body = await request.json()
        results = [{"doc_id": "b.txt", "chunk_id": "b1", "start": 0, "end": 10, "section": "", "text": B_TEXT,
                    "score": 0.9},
                   {"doc_id": "a.txt", "chunk_id": "a1", "start": 0, "end": 12, "section": "",
                    "text": a_traditional, "score": 0.8}]
        return {"results": results[:body["top_k"]]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        assert body["stream"] is True and body["model"] == "rag"
        question = body["messages"][-1]["content"]
        refused = question == "Q4"
        deltas = ["資料中", "沒有答案。"] if refused else ["陽山縣在清遠市", "排名第三。"]
        citations = [] if refused else [{"doc_id": "a.txt", "start": 9, "end": 12, "text": "第三。",
                                         "section": ""}]

        def events() -> Iterator[str]:
            for delta in deltas:
                chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": delta}}]}
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
            final = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {},
                                                                     "finish_reason": "stop"}],
                     "citations": citations, "refused": refused, "context": [] if refused else [
                         {"doc_id": "a.txt", "start": 0, "end": 12, "text": a_traditional, "section": ""}],
                     "usage": {"prompt_tokens": 150, "completion_tokens": 5}}
            yield f"data: {json.dumps(final, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def test_run_eval_over_http(tmp_path: Path, corpus: Path) -> None:
    gold = write_gold(tmp_path / "gold.jsonl", [
        {"id": "q1", "question": "Q1", "doc": "a.txt", "must": [["第三"], ["清远"]]},
        {"id": "q4", "question": "Q4", "doc": None, "must": []},
    ])
    client = httpx.Client(transport=SyncASGITransport(fake_server("k1")), base_url="http://testserver")
    summary = run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", url="http://testserver",
                       api_key="k1", client=client, k=2, progress=False)
    m = summary["metrics"]
    assert (m["doc_hit@1"], m["doc_hit@k"], m["mrr"]) == (0.0, 1.0, 0.5)
    assert m["evidence@k"] == 1.0  # "清远" is only found once 清遠 in the result text is Simplified
    assert (m["answer_accuracy"], m["refusal_on_unanswerable"], m["false_refusal"]) == (1.0, 1.0, 0.0)
    assert (m["citation_doc_correct"], m["citation_span_valid"], m["citations"]) == (1.0, 1.0, 1)
    assert (m["prompt_tokens_mean"], m["errors"]) == (150.0, 0)
    assert m["evidence_shown"] == 1.0  # the shown 清遠 holds the must 清远 once made Simplified
    assert summary["mode"] == "http" and summary["url"] == "http://testserver"
    record = json.loads((tmp_path / "out" / "results.jsonl").read_text("utf-8").splitlines()[0])
    assert record["answer"]["reply"]["text"] == "陽山縣在清遠市排名第三。"


def test_http_wrong_key_stops_the_run(tmp_path: Path, corpus: Path) -> None:
    gold = write_gold(tmp_path / "gold.jsonl", GOLD_ROWS[:1])
    client = httpx.Client(transport=SyncASGITransport(fake_server("k1")))
    with pytest.raises(EvalError, match="HTTP 401: bad key"):
        run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", url="http://testserver", api_key="nope",
                 client=client, progress=False)


# --- thresholds ----------------------------------------------------------------------------------------


def summary_with(metrics: dict[str, Any], no_llm: bool = False, **extra: Any) -> dict[str, Any]:
    return {"no_llm": no_llm, "limit": None, "ids": None, "question_ids": ["q1", "q2"], "metrics": metrics,
            "split": "test", "k": 5, **extra}


def test_thresholds_minimum_and_maximum() -> None:
    thresholds = {"full": {"answer_accuracy": 0.7, "false_refusal": {"max": 0.2}, "accuracy": {"min": 0.5}}}
    summary = summary_with({"answer_accuracy": 0.61, "false_refusal": 0.25, "accuracy": 0.5})
    assert check_thresholds(summary, thresholds) == ["answer_accuracy 0.61 < 0.70", "false_refusal 0.25 > 0.20"]
    passing = summary_with({"answer_accuracy": 0.7, "false_refusal": 0.2, "accuracy": 0.9})
    assert check_thresholds(passing, thresholds) == []


def test_thresholds_show_more_digits_when_values_round_alike() -> None:
    assert check_thresholds(summary_with({"mrr": 0.6949}), {"full": {"mrr": 0.695}}) == ["mrr 0.6949 < 0.6950"]


def test_thresholds_section_follows_the_run_kind() -> None:
    thresholds = {"retrieval": {"doc_hit@1": 0.8}, "full": {"answer_accuracy": 0.7}}
    metrics = {"doc_hit@1": 0.5, "answer_accuracy": 0.5}
    assert check_thresholds(summary_with(metrics, no_llm=True), thresholds) == ["doc_hit@1 0.50 < 0.80"]
    assert check_thresholds(summary_with(metrics), thresholds) == ["answer_accuracy 0.50 < 0.70"]


def test_thresholds_report_unknown_and_unmeasured_metrics() -> None:
    failures = check_thresholds(summary_with({"mrr": None}), {"full": {"mrr": 0.1, "mmr": 0.1}})
    assert failures[0] == "mrr was not measured in this run"
    assert failures[1].startswith("mmr: unknown metric (known: mrr)")


def test_thresholds_check_the_run_covers_its_questions() -> None:
    thresholds = {"retrieval": {}, "full": {}, "full_subset_ids": ["q1", "q3"]}
    assert check_thresholds(summary_with({}, no_llm=True, limit=5), thresholds) == [
        "retrieval thresholds apply to a whole set, but this run used --limit or --ids"]
    assert check_thresholds(summary_with({}), thresholds)[0].startswith(
        "full thresholds apply to the 2 questions of full_subset_ids")
    assert check_thresholds(summary_with({}, question_ids=["q3", "q1"]), thresholds) == []


def test_malformed_threshold_raises(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="threshold for false_refusal must be a number"):
        check_thresholds(summary_with({"false_refusal": 0.1}), {"full": {"false_refusal": {"maximum": 0.2}}})
    path = tmp_path / "t.json"
    path.write_text('{"full_subset_ids": "q1"}')
    with pytest.raises(EvalError, match="'full_subset_ids' must be a list"):
        load_thresholds(path)


def test_shipped_thresholds_name_real_metrics_and_gate_real_runs() -> None:
    thresholds = load_thresholds(REPO / "eval" / "thresholds.json")
    known = compute_metrics([])
    for section in ("retrieval", "full", "adversarial"):
        assert set(thresholds[section]) <= set(known)
    subset = thresholds["full_subset_ids"]
    lower_is_better = [name for name in known if name.startswith("false_refusal")]
    best = {name: 1.0 for name in known} | dict.fromkeys(lower_is_better, 0.0)
    worst = {name: 0.0 for name in known} | dict.fromkeys(lower_is_better, 1.0)
    ids = {"question_ids": subset} if subset else {}
    for section in ("retrieval", "full", "adversarial"):
        no_llm = section == "retrieval"
        assert check_thresholds(summary_with(best, no_llm, **ids), thresholds, section) == []
        assert len(check_thresholds(summary_with(worst, no_llm, **ids), thresholds, section)) == len(
            thresholds[section])


# --- conversations and forbidden strings ----------------------------------------------------------------


def test_followups_send_their_history_and_search_with_the_earlier_turn(tmp_path: Path, corpus: Path) -> None:
    history = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "第三"}]
    gold = write_gold(tmp_path / "gold.jsonl", [
        {"id": "f1", "type": "followup", "question": "Q6", "doc": "b", "must": [["蓝色"]], "history": history}])
    service = scenario_service()
    summary = run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", k=2, progress=False, service=service)
    assert service.sent == [history + [{"role": "user", "content": "Q6"}]]
    assert service.searched == [("Q1 Q6", 2)]
    assert summary["metrics"]["answer_accuracy"] == 1.0


def test_an_answer_with_a_forbidden_string_is_wrong(tmp_path: Path, corpus: Path) -> None:
    gold = write_gold(tmp_path / "gold.jsonl", [
        {"id": "a1", "type": "adversarial", "question": "Q6", "doc": "b", "must": [["蓝色"]], "must_not": ["天空"]},
        {"id": "a2", "type": "adversarial", "question": "Q1", "doc": "a", "must": [["第三"]], "must_not": ["攻破"]}])
    summary = run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", progress=False,
                       service=scenario_service())
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text("utf-8").splitlines()]
    assert [r["verdict"] for r in records] == ["✗", "✓"]
    assert summary["metrics"]["answer_accuracy"] == 0.5


def test_thresholds_fix_k_and_split() -> None:
    thresholds = {"split": "test", "k": 5, "retrieval": {}, "full": {}}
    assert check_thresholds(summary_with({}, no_llm=True, k=50), thresholds) == [
        "retrieval thresholds were measured with k = 5, but this run used k = 50"]
    assert check_thresholds(summary_with({}, split=None), thresholds) == [
        "full thresholds apply to the 'test' split, but this run covered every split"]
    assert check_thresholds(summary_with({}, split="dev"), thresholds, "full") == [
        "full thresholds apply to the 'test' split, but this run covered dev"]


def shown(*texts: str) -> tuple[Sentence, ...]:
    """Sentences of the corpus as the model was shown them (offsets do not matter here)."""
    return tuple(Sentence("a.txt", 0, len(t), t, t, "") for t in texts)


def test_each_wrong_answer_is_traced_to_the_stage_that_lost_it(tmp_path: Path, corpus: Path) -> None:
    """Search finds a.txt for every question; what the model was shown and what it said differ."""
    gold = write_gold(tmp_path / "gold.jsonl", [
        {"id": f"s{i}", "question": f"S{i}", "doc": "a", "must": [[must]]}
        for i, must in enumerate(["第三", "第三", "第三", "第三", "第二句", "白色"])])
    wrong = Answer("排名第五。", (), False, prompt_tokens=90, context=shown("阳山县在清远市排名第三。"))
    answers = {
        "S0": Answer("排名第三。", (), False, prompt_tokens=90, context=shown("阳山县在清远市排名第三。")),  # right
        "S1": wrong,  # shown, yet wrong: the model
        "S2": Answer("资料中没有答案。", (), True, prompt_tokens=90, reason="support: 0 sentences",
                     context=shown("阳山县在清远市排名第三。")),  # shown, refused after generation: still the model
        "S3": Answer("资料中没有答案。", (), True, reason="coverage 0.31 < 0.5"),  # refused before the model
        "S4": wrong,  # 第二句 was found by the search, but not shown
        "S5": wrong,  # 白色 is nowhere: the search
    }
    hits = {f"S{i}": [hit("a.txt", A_TEXT)] for i in range(6)}
    summary = run_eval(Settings(corpus_dir=corpus), gold, tmp_path / "out", k=1, progress=False,
                       service=FakeService(hits, answers))
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text("utf-8").splitlines()]
    assert [r["lost_at"] for r in records] == [None, "model", "model", "before_model", "prompt", "retrieval"]
    m = summary["metrics"]
    assert m["evidence_shown"] == pytest.approx(3 / 6)
    assert (m["lost_retrieval"], m["lost_before_model"], m["lost_prompt"]) == pytest.approx((1 / 6, 1 / 6, 1 / 6))
    assert m["lost_model"] == pytest.approx(2 / 6)
    assert m["answer_accuracy"] + sum(m[f"lost_{s}"] for s in ("retrieval", "before_model", "prompt", "model")) \
        == pytest.approx(1.0)
    report = (tmp_path / "out" / "report.md").read_text("utf-8")
    assert "| all must groups in what the model was shown | `evidence_shown` | 0.500 |" in report
    assert "| false refusal | coverage 0.31 < 0.5 | before_model |" in report
