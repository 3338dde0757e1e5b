// node --test: code point offsets → UTF-16 spans (rag/server/static/highlight.js).
import assert from "node:assert/strict";
import test from "node:test";

import { codePointLength, splitSpan, utf16Index } from "../../../rag/server/static/highlight.js";

test("BMP text: code points and UTF-16 units agree", () => {
  const text = "一、阳山县排名第一。二、其他";
  assert.deepEqual(splitSpan(text, 2, 10), { before: "一、", mark: "阳山县排名第一。", after: "二、其他" });
  assert.equal(utf16Index(text, 5), 5);
});

test("astral characters (an Extension B ideograph, an emoji) count as one offset each", () => {
  const text = "𠀋村有😀三所学校。";
  assert.equal(text.length, 11);
  assert.equal(codePointLength(text), 9);
  // Python: text[2:8] == "有😀三所学校"
  assert.deepEqual(splitSpan(text, 2, 8), { before: "𠀋村", mark: "有😀三所学校", after: "。" });
  assert.equal(utf16Index(text, 1), 2);
  assert.equal(utf16Index(text, 9), 11);
});

test("empty span, whole text and the end of the text", () => {
  const text = "甲乙丙";
  assert.deepEqual(splitSpan(text, 0, 3), { before: "", mark: "甲乙丙", after: "" });
  assert.deepEqual(splitSpan(text, 3, 3), { before: "甲乙丙", mark: "", after: "" });
});

test("spans that do not fit the text are refused, not clamped", () => {
  assert.throws(() => splitSpan("甲乙丙", 2, 4), RangeError);
  assert.throws(() => splitSpan("甲乙丙", -1, 2), RangeError);
  assert.throws(() => splitSpan("甲乙丙", 2, 1), RangeError);
  assert.throws(() => splitSpan("甲乙丙", 0.5, 2), RangeError);
  assert.throws(() => splitSpan("𠀋", 0, 2), RangeError);
});
