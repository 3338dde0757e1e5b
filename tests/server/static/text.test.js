// node --test: interface wording (rag/server/static/text.js).
import assert from "node:assert/strict";
import test from "node:test";

import { documentMeta, errorMessage, pageLabel, refusalReason, refusalText } from "../../../rag/server/static/text.js";

test("refusal reasons in plain Chinese, by the check that refused", () => {
  // The named checks of rag/answer/refuse.py.
  assert.equal(refusalReason("not_a_question: the message is a JSON value, not a question"), "收到的不是一个问题。");
  assert.equal(refusalReason("nothing_found: no passage was retrieved"), "已收录的文档中没有检索到相关段落。");
  assert.equal(refusalReason("model_none: the model chose no sentence (p_none 0.97)"),
    "模型在检索到的句子中没有找到能回答这个问题的句子。");
  assert.equal(refusalReason("answerability 0.31 < 0.52 (p_none 0.40, coverage 0.50, chosen 1.00)"),
    "检索到的内容不足以可靠地回答这个问题。");
  assert.equal(refusalReason("model_not_found: the model said the passages hold no answer"),
    "模型在检索到的段落中没有找到答案。");
  assert.equal(refusalReason("invented_numbers: ['12'] not in the evidence"),
    "回答中的数字在文档里找不到，为避免编造，不作回答。");
  assert.equal(refusalReason("ungrounded: none of the answer's own words is in the sentences it rests on"),
    "回答的内容在文档里找不到依据。");
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
