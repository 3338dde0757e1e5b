// node --test: interface wording (rag/server/static/text.js).
import assert from "node:assert/strict";
import test from "node:test";

import { documentMeta, errorMessage, pageLabel, refusalReason, refusalText } from "../../../rag/server/static/text.js";

test("refusal reasons in plain Chinese, naming what is missing", () => {
  assert.equal(refusalReason("weak evidence: coverage 0.21 (missing 山丹县、2021), dense 0.83"),
    "文档里找不到问题中的关键内容：山丹县、2021。");
  assert.equal(refusalReason("weak evidence: coverage 0.90 (missing ), dense 0.41"), "没有与问题足够相似的段落。");
  assert.equal(refusalReason("numbers not in the evidence: ['12']"), "回答中的数字在文档里找不到，为避免编造，不作回答。");
  assert.equal(refusalReason("the question asks how many but the answer holds no number"),
    "问题问的是数量，但回答里没有数字。");
  assert.equal(refusalReason("the answer is not grounded in the evidence (0.31)"), "回答的内容在文档里找不到依据。");
  assert.equal(refusalReason("the model found no answer in the passages"), "模型在检索到的段落中没有找到答案。");
  assert.equal(refusalReason("no retrieved sentence supports the answer"), "没有哪一句原文能支持这个回答。");
  // The named checks of rag/refuse.py.
  assert.equal(refusalReason("coverage 0.31 < 0.5 (missing 火星)"), "文档里找不到问题中的关键内容：火星。");
  assert.equal(refusalReason("coverage 0.31 < 0.5"), "文档里找不到能回答这个问题的内容。");
  assert.equal(refusalReason("dense 0.71 < 0.8"), "没有与问题足够相似的段落。");
  assert.equal(refusalReason("not_a_question: the message is a JSON value, not a question"), "收到的不是一个问题。");
  assert.equal(refusalReason("support: 0 sentences support the answer"), "没有哪一句原文能支持这个回答。");
  assert.equal(refusalReason("model_not_found: the model said the passages hold no answer"),
    "模型在检索到的段落中没有找到答案。");
  assert.equal(refusalReason("invented_numbers: ['12'] not in the evidence"),
    "回答中的数字在文档里找不到，为避免编造，不作回答。");
  assert.equal(refusalReason("quantity: 0 numbers in the answer to a how-many question"),
    "问题问的是数量，但回答里没有数字。");
  assert.equal(refusalReason("answer_type: 0 person names from the evidence in the answer to a who-question"),
    "问题问的是谁，但回答里没有文档中出现的人名。");
  assert.equal(refusalReason("miscounted: ['47分'] count something else in the evidence"),
    "回答中的“47分”在文档里数的是别的东西，为避免答非所问，不作回答。");
  assert.equal(refusalReason("subject 0.41 < 0.5 (the cited sentences miss 留守、儿童)"),
    "回答中的数字出自与问题所问无关的句子。");
  assert.equal(refusalReason("grounding 0.31 < 0.5"), "回答的内容在文档里找不到依据。");
  assert.equal(refusalReason("role: 张三 not named as 局长 in the evidence"), "文档里没有写明张三是局长。");
  assert.equal(refusalReason(""), "已收录的文档中没有足够的依据回答这个问题。");
  assert.equal(refusalReason(undefined), "已收录的文档中没有足够的依据回答这个问题。");
});

test("a refused stream shows only the refusal the server appended", () => {
  assert.equal(refusalText("阳山县排名第九\n\n抱歉，没有找到。"), "抱歉，没有找到。");
  assert.equal(refusalText("抱歉，没有找到。"), "抱歉，没有找到。");
});

test("page labels for PDF citations", () => {
  assert.equal(pageLabel({ page: 3 }), "第 3 页");
  assert.equal(pageLabel({ page: 3, page_end: 5 }), "第 3–5 页");
  assert.equal(pageLabel({ page: 3, page_end: 3 }), "第 3 页");
  assert.equal(pageLabel({}), "");
});

test("error envelopes and document lines", () => {
  assert.equal(errorMessage({ error: { type: "document_error", message: "x.txt 是空文件" } }, 422), "x.txt 是空文件");
  assert.equal(errorMessage(null, 502), "请求失败（HTTP 502）");
  const meta = documentMeta({ characters: 12345, chunks: 40, ingested_at: "2026-11-24T10:03:00" });
  assert.equal(meta, "12,345 字 · 40 段 · 2026-11-24 10:03");
});
