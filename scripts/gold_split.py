"""Give every gold question that has no ``split`` yet a stable one, stratified by type.

    python scripts/gold_split.py [eval/gold.jsonl]

Questions that already have a split keep it, so the split never changes once written. New questions
are taken in the order of the SHA-1 of their id; each goes to whichever part holds fewer questions of
its ``type`` so far (``dev`` on a tie), so every type is split evenly. The file is rewritten in place,
one JSON object per line, in its original order.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

GOLD = Path(__file__).resolve().parent.parent / "eval" / "gold.jsonl"


def assign_splits(rows: list[dict]) -> list[dict]:
    """``rows`` with ``split`` set on those that lacked it (the others unchanged)."""
    have: Counter[tuple[str, str]] = Counter((r.get("type", ""), r["split"]) for r in rows if "split" in r)
    new = sorted((r for r in rows if "split" not in r), key=lambda r: hashlib.sha1(r["id"].encode()).hexdigest())
    for row in new:
        kind = row.get("type", "")
        row["split"] = "test" if have[(kind, "test")] < have[(kind, "dev")] else "dev"
        have[(kind, row["split"])] += 1
    return rows


def main(path: Path = GOLD) -> None:
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    rows = assign_splits(rows)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(Counter((r.get("type"), r["split"]) for r in rows))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else GOLD)
