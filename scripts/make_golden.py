"""Write ``tests/golden/chunks.json``: the chunks of every sample document under the default chunker.

Run after an intended change to the normalizer or chunker, review the diff, and commit it with the change:

    python scripts/make_golden.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag.chunk import ChunkerConfig, chunk_document
from rag.formats import load_documents
from rag.normalize import clean_document

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"
GOLDEN = REPO / "tests" / "golden" / "chunks.json"
HEAD_CHARS = 20
DEFAULTS = ChunkerConfig()  # max 360, min 80 clean characters


Golden = dict[str, list[dict[str, Any]]]


def golden_chunks(corpus: Path = CORPUS, config: ChunkerConfig = DEFAULTS) -> Golden:
    """Per document id, each chunk's original span, section path and first characters."""
    documents, skipped = load_documents([corpus])
    if skipped:
        raise SystemExit(f"cannot read {[s.doc_id for s in skipped]}")
    return {doc.doc_id: [{"start": c.start, "end": c.end, "section": list(c.section),
                          "text_head": c.text[:HEAD_CHARS]}
                         for c in chunk_document(clean_document(doc), config)]
            for doc in documents}


def dumps(golden: Golden) -> str:
    """JSON with one chunk per line, so a change to the chunker reads as a short diff."""
    docs = []
    for doc_id, chunks in golden.items():
        rows = ",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in chunks)
        docs.append(f"  {json.dumps(doc_id)}: [\n{rows}\n  ]")
    return "{\n" + ",\n".join(docs) + "\n}\n"


def main() -> None:
    golden = golden_chunks()
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(dumps(golden), "utf-8")
    counts = ", ".join(f"{doc_id}: {len(chunks)}" for doc_id, chunks in golden.items())
    print(f"wrote {GOLDEN.relative_to(REPO)} ({counts})")


if __name__ == "__main__":
    main()
