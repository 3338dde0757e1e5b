"""PDF, Word and web-page documents over HTTP and on the command line: uploads, page numbers on
citations, the stored extracted text, and a clear 4xx (or a named skip line) for every kind of bad file."""

from __future__ import annotations

import difflib
import io
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pypdfium2 as pdfium
import pytest
from fastapi.testclient import TestClient

from rag.config import Settings
from rag.formats import page_span
from rag.ingest import ingest_paths
from rag.normalize import clean
from rag.server.app import create_app
from tests.fakes import FAKE_PARTS, FakeEmbedder
from tests.fixtures.scans import blank_image, fixture_pdf, picture_file, scan_pdf

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "formats"
PDF0 = "000_ae0e48cc884afd96.pdf"
PDF4 = "004_c849ceb370c41d84.pdf"


def assert_error(response: httpx.Response, status: int, kind: str, client: TestClient | None = None) -> str:
    """The error's message, checked for status and type. An upload read by OCR may answer 202 first (OCR
    runs in the job): then its job must end failed with that error."""
    if client is not None and status == 422 and response.status_code == 202:
        job = finished(client, response.json())
        assert job["status"] == "failed" and job["error"]["type"] == kind, job
        return str(job["error"]["message"])
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and body["error"]["type"] == kind
    assert "Traceback" not in response.text
    return str(body["error"]["message"])


def finished(client: TestClient, job: dict[str, Any]) -> dict[str, Any]:
    while job["status"] in ("queued", "running"):
        time.sleep(0.2)
        job = client.get(f"/v1/jobs/{job['id']}").json()
    return job


@pytest.fixture(scope="module")
def pdf_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    """An app whose corpus is the five sample documents as PDFs."""
    root = tmp_path_factory.mktemp("pdf")
    corpus = root / "corpus"
    corpus.mkdir()
    for path in FIXTURES.glob("*.pdf"):
        (corpus / path.name).write_bytes(path.read_bytes())
    settings = Settings(index_dir=root / "index", corpus_dir=corpus,
                        models_dir=root / "models", max_pages=8,
                        max_unpacked_bytes=1_000_000)
    index, report = ingest_paths([corpus], settings, FakeEmbedder(), None)
    assert [s.doc_id for s in report.skipped] == ["003_727ffb95bee0db86.pdf"]  # 10 pages > max_pages
    with TestClient(create_app(settings, FAKE_PARTS)) as client:
        yield client, settings


def test_pdf_citations_carry_pages_and_verify_against_the_stored_text(pdf_app: tuple[TestClient, Settings]) -> None:
    client, _ = pdf_app
    body = client.post("/v1/chat/completions",
                       json={"messages": [{"role": "user", "content": "阳山县在清远市八个县中排名第几？"}]}).json()

    assert body["refused"] is False and body["citations"]
    for citation in body["citations"]:
        document = client.get(f"/v1/documents/{citation['doc_id']}/text").json()
        assert document["pages"][0] == 0 and len(document["pages"]) >= 2
        assert clean(document["text"][citation["start"]:citation["end"]]) == citation["text"]
        page, page_end = page_span(document["pages"], citation["start"], citation["end"])
        assert citation["page"] == page and citation.get("page_end") == page_end
        pdf = pdfium.PdfDocument(FIXTURES / citation["doc_id"])
        raw = "".join(pdf[page - 1].get_textpage().get_text_range().split())
        assert "".join(citation["text"].split())[:10] in raw  # the cited words are on that page


def test_search_results_of_a_pdf_index_the_extracted_text(pdf_app: tuple[TestClient, Settings]) -> None:
    client, _ = pdf_app
    hit = client.post("/v1/search", json={"query": "东莞公办园学位", "top_k": 1}).json()["results"][0]
    text = client.get(f"/v1/documents/{hit['doc_id']}/text").json()["text"]
    assert hit["doc_id"].endswith(".pdf") and clean(text[hit["start"]:hit["end"]]) == hit["text"]
    assert hit["section"]  # every chunk has a section path


def upload(client: TestClient, name: str, data: bytes) -> httpx.Response:
    return client.post("/v1/documents", files={"file": (name, data, "application/octet-stream")})


def test_word_and_web_page_uploads_are_indexed_with_their_extracted_text(
        pdf_app: tuple[TestClient, Settings]) -> None:
    client, settings = pdf_app
    for ext in (".docx", ".html"):
        name = f"upload{ext}"
        response = upload(client, name, (FIXTURES / f"004_c849ceb370c41d84{ext}").read_bytes())
        assert response.status_code == 201, response.text
        document = client.get(f"/v1/documents/{name}/text").json()
        assert document["text"].startswith("实干担当 笃行致远\n奋力谱写辽源教育高质量发展新篇章\n2月19日")
        assert document["pages"] == [] and "<" not in document["text"]
        assert (settings.corpus_dir / name).read_bytes()[:2] in (b"PK", b"<!")  # the file itself is kept
        assert client.delete(f"/v1/documents/{name}").status_code == 200


def bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", b" " * 3_000_000)
    return out.getvalue()


@pytest.mark.parametrize(("name", "data", "status", "message"), [
    ("locked.pdf", (FIXTURES / "bad" / "encrypted.pdf").read_bytes(), 422, "locked.pdf: the PDF is encrypted"),
    ("blank.png", blank_image(), 422, "blank.png: no text recognised in the image"),
    ("cut.png", picture_file(fixture_pdf("000_ae0e48cc884afd96"))[:3000], 422, "cut.png: corrupt or unreadable image"),
    ("cut.pdf", (FIXTURES / PDF0).read_bytes()[:20_000], 422, "cut.pdf: truncated or corrupt PDF"),
    ("cut.docx", (FIXTURES / "000_ae0e48cc884afd96.docx").read_bytes()[:9_000], 422,
     "cut.docx: corrupt or truncated Word file"),
    ("bomb.docx", bomb(), 422, "bomb.docx: unpacks to 3,000,000 bytes; the limit is 1,000,000"),
    ("notes.txt", (FIXTURES / PDF0).read_bytes(), 422, "notes.txt: the name says text but the content is a PDF"),
    ("report.pdf", "一份文字。".encode(), 422, "report.pdf: the name says PDF but the content is text"),
    ("long.pdf", (FIXTURES / "003_727ffb95bee0db86.pdf").read_bytes(), 422, "long.pdf: 10 pages; the limit is 8"),
    ("old.doc", b"\xd0\xcf\x11\xe0", 400, "file name 'old.doc' is not accepted"),
])
def test_bad_uploads_get_a_4xx_with_the_reason_and_change_nothing(
        pdf_app: tuple[TestClient, Settings], name: str, data: bytes, status: int, message: str) -> None:
    client, settings = pdf_app
    before = sorted(p.name for p in settings.corpus_dir.iterdir())
    count = len(client.get("/v1/documents").json()["data"])

    got = assert_error(upload(client, name, data), status, "document_error" if status == 422 else
                       "invalid_request_error", client)

    assert got.startswith(message)
    assert sorted(p.name for p in settings.corpus_dir.iterdir()) == before
    assert len(client.get("/v1/documents").json()["data"]) == count


def test_cli_ingest_names_each_skipped_file_and_ingests_the_rest(tmp_path: Path) -> None:
    corpus = tmp_path / "in"
    corpus.mkdir()
    for ext in (".pdf", ".docx", ".html"):
        (corpus / f"good{ext}").write_bytes((FIXTURES / f"000_ae0e48cc884afd96{ext}").read_bytes())
    (corpus / "locked.pdf").write_bytes((FIXTURES / "bad" / "encrypted.pdf").read_bytes())
    (corpus / "blank.png").write_bytes(blank_image())
    (corpus / "liar.docx").write_bytes((FIXTURES / PDF0).read_bytes())
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "RAG_INDEX_DIR": str(tmp_path / "index"), "RAG_MODELS_DIR": str(tmp_path / "models")}

    run = subprocess.run([sys.executable, "-m", "tests.fakes", "ingest", str(corpus)], env=env, capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "skipped liar.docx: liar.docx: the name says DOCX but the content is a PDF" in lines
    assert "skipped locked.pdf: locked.pdf: the PDF is encrypted (password-protected); remove the password " \
           "and upload it again" in lines
    assert "skipped blank.png: blank.png: no text recognised in the image" in lines
    assert any(line.startswith("ingested: 3 documents") for line in lines)


@pytest.mark.slow
def test_an_image_only_pdf_upload_is_read_in_the_job_and_cited_by_page(
        pdf_app: tuple[TestClient, Settings]) -> None:
    """The scan of sample 004 (2 pages, no text layer; Simplified, which the recogniser's dictionary holds)
    replaces its PDF: answered with citations whose page is the page that holds the words, verified against
    the stored text."""
    client, settings = pdf_app
    name = PDF4.replace(".pdf", ".scan.pdf")
    response = upload(client, name, scan_pdf(fixture_pdf(PDF4.removesuffix(".pdf"))))
    if response.status_code == 202:  # OCR takes seconds a page: poll the job
        assert finished(client, response.json())["status"] == "done"
    else:
        assert response.status_code == 201, response.text
    assert client.delete(f"/v1/documents/{PDF4}").status_code == 200  # the scan alone answers
    document = client.get(f"/v1/documents/{name}/text").json()
    assert len(document["pages"]) == 2 and document["title"] == "实干担当笃行致远 奋力谱写辽源教育高质量发展新篇章"

    body = client.post("/v1/chat/completions",
                       json={"messages": [{"role": "user", "content": "辽源市教育局局长是谁？"}]}).json()

    assert body["refused"] is False and body["citations"], body["reason"]
    assert {c["doc_id"] for c in body["citations"]} == {name}
    for citation in body["citations"]:
        assert clean(document["text"][citation["start"]:citation["end"]]) == citation["text"]
        page, page_end = page_span(document["pages"], citation["start"], citation["end"])
        assert citation["page"] == page and citation.get("page_end") == page_end
        assert longest_common_run(citation["text"], PDF4) == page  # the original's page that holds the words
    assert upload(client, PDF4, (FIXTURES / PDF4).read_bytes()).status_code == 201  # as the other tests had it


def longest_common_run(text: str, pdf_name: str) -> int:
    """The 1-based page of a text-layer PDF that shares the longest run of characters with ``text``."""
    pdf = pdfium.PdfDocument(FIXTURES / pdf_name)
    pages = ["".join(pdf[i].get_textpage().get_text_range().split()) for i in range(len(pdf))]
    text = "".join(text.split())
    runs = [difflib.SequenceMatcher(None, text, raw, autojunk=False).find_longest_match().size for raw in pages]
    return runs.index(max(runs)) + 1
