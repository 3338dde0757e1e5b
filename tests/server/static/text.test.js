// node --test: interface wording (rag/server/static/text.js).
import assert from "node:assert/strict";
import test from "node:test";

import { documentMeta, errorMessage, pageLabel, refusalReason, refusalText } from "../../../rag/server/static/text.js";

test("refusal reasons in plain Chinese, by the check that refused", () => {
  // The named checks of rag/refuse.py, in the words the server writes them.
  assert.equal(refusalReason("not_a_question: the message is a JSON value, not a question"), "收到的不是一个问题。");
  assert.equal(refusalReason("coverage 0.31 < 0.5 (missing 火星、基地)"), "已收录的文档中没有一篇讲到问题里的“火星、基地”。");
  assert.equal(refusalReason("coverage 0.00 < 0.5"), "已收录的文档中没有一篇讲到问题所问的内容。");
  assert.equal(refusalReason("model_not_found: the model said the passages hold no answer"),
    "模型在检索到的段落中没有找到答案。");
  assert.equal(refusalReason("echo: 0 words of the answer are not the question's"), "模型只是重复了问题，没有给出答案。");
  assert.equal(refusalReason("invented_numbers: ['12'] not in the evidence"),
    "回答中的数字在文档里找不到，为避免编造，不作回答。");
  assert.equal(refusalReason("miscounted: ['47'] count something else in the evidence"), "回答中的数字在文档里说的是别的事情。");
  assert.equal(refusalReason("answer_type: the answer to a who-question names no one and nothing of the evidence"),
    "问的是谁，回答里却没有文档中提到的人或事物。");
  assert.equal(refusalReason("answer_type: no figure in 所 other than the question's in the answer to a how-many question"),
    "问的是数量，回答里却没有所问单位的数字。");
  assert.equal(refusalReason("answer_type: no date in the answer to a when-question"), "问的是时间，回答里却没有日期。");
  assert.equal(refusalReason("answer_type: no date in 日 in the answer to a when-question"), "问的是时间，回答里却没有日期。");
  assert.equal(refusalReason("support: 0 sentences support the answer"), "文档里没有一句话能支持这个回答。");
  // Older or remote servers' wording.
  assert.equal(refusalReason("the model found no answer in the passages"), "模型在检索到的段落中没有找到答案。");
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
