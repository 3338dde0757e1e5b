"""Prove, in a child process, that the installed llama.cpp decodes the GGUF on this CPU — before the model is
loaded in the serving process, where a crash in native code would be the first thing a user sees.

A proof is remembered beside the GGUF, keyed by the model file, the llama.cpp build and the CPU's flags,
so that a second start does not pay for it; any of the three changing proves again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rag.errors import ModelCrashError, ModelProvisionError
from rag.models.llama_build import RECORD, Proof, cpuid_flags, prove_decode

log = logging.getLogger(__name__)


def build_record() -> dict[str, Any]:
    """What ``llama_build`` recorded of the llama.cpp in this environment (``{}`` for a build made otherwise)."""
    try:
        return dict(json.loads((Path(sys.prefix) / RECORD).read_text("utf-8")))
    except (OSError, ValueError):
        return {}


def _key(gguf: Path, record: dict[str, Any]) -> str:
    import llama_cpp  # the library file itself: a rebuild without a record still changes the key

    lib = Path(llama_cpp.__file__).parent / "lib"
    libs = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in lib.glob("*.so*")) if lib.exists() else []
    stat = gguf.stat()
    facts = [str(gguf.resolve()), stat.st_size, stat.st_mtime_ns, record.get("key"), libs, sorted(cpuid_flags())]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]


def _remembered(path: Path, key: str) -> Proof | None:
    try:
        saved = json.loads(path.read_text("utf-8"))
        return Proof(**saved["proof"]) if saved.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_decodes(gguf: Path, fresh: bool = False, python: str = sys.executable) -> Proof:
    """The proof for ``gguf`` (remembered, or run now in a child process). Raises ``ModelCrashError`` when
    the child could not decode: the message names what happened and how to rebuild."""
    if not gguf.is_file():
        raise ModelProvisionError(f"no GGUF model at {gguf}; run `rag models` or set RAG_LLM_PATH")
    record = build_record()
    key = _key(gguf, record)
    memo = gguf.with_name(gguf.name + ".proof.json")
    proof = None if fresh else _remembered(memo, key)
    if proof is None:
        proof = prove_decode(python, gguf)
        log.info("decode check of %s: %s", gguf.name, proof)
        if proof.ok:
            with contextlib.suppress(OSError):  # a read-only models folder: prove again next time
                memo.write_text(json.dumps({"key": key, "proof": asdict(proof)}), "utf-8")
    if not proof.ok and proof.detail.startswith("crashed"):
        raise ModelCrashError(f"llama.cpp {proof.detail} while decoding {gguf.name} on this CPU (build: "
                              f"{record.get('cmake_args', 'not made by rag/models/llama_build.py')}); rebuild it "
                              "for this CPU with `make rebuild-llama`, which tries smaller instruction sets until "
                              "one decodes")
    if not proof.ok:  # an error Python saw: the file, not the CPU
        raise ModelProvisionError(f"llama.cpp could not load and decode {gguf}: {proof.detail}; `rag models` "
                                  "verifies the provisioned model (or point RAG_LLM_PATH at a GGUF chat model)")
    return proof


@functools.lru_cache(maxsize=8)
def describe(proof: Proof) -> dict[str, Any]:
    """The proof and the build, as ``/health`` shows them; read once per proof, not on every request."""
    record = build_record()
    return {**asdict(proof), "features": record.get("features"), "cmake_args": record.get("cmake_args")}
