// node --test: the SSE parser and the chat chunk reader of rag/server/static/sse.js.
import assert from "node:assert/strict";
import test from "node:test";

import { readChatEvent, readChatStream, SSEParser } from "../../../rag/server/static/sse.js";

const chunk = (content) => `data: ${JSON.stringify({ object: "chat.completion.chunk",
  choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
const FINAL = { object: "chat.completion.chunk", choices: [{ index: 0, delta: {}, finish_reason: "stop" }],
  citations: [{ doc_id: "a.txt", start: 3, end: 9, text: "阳山县排名第一", section: "一、概况" }], refused: false,
  reason: "" };
const STREAM = chunk("阳山") + chunk("县排名") + chunk("第一。") + `data: ${JSON.stringify(FINAL)}\n\ndata: [DONE]\n\n`;

test("events split at every possible position come out whole and in order", () => {
  for (let cut = 0; cut <= STREAM.length; cut++) {
    const parser = new SSEParser();
    const events = [...parser.feed(STREAM.slice(0, cut)), ...parser.feed(STREAM.slice(cut))];
    assert.equal(events.length, 5, `cut at ${cut}`);
    assert.equal(events[4].data, "[DONE]");
    assert.equal(JSON.parse(events[1].data).choices[0].delta.content, "县排名");
  }
});

test("one character at a time, CRLF and CR line ends, comments, multi-line data and event names", () => {
  const text = ": keep-alive\r\nevent: note\r\ndata: 第一行\r\ndata:第二行\r\n\r\ndata: x\r\rdata: y\n\n";
  const parser = new SSEParser();
  const events = [];
  for (const ch of text) events.push(...parser.feed(ch));
  assert.deepEqual(events, [
    { event: "note", data: "第一行\n第二行" },
    { event: "message", data: "x" },
    { event: "message", data: "y" },
  ]);
});

test("a field without a colon and an empty data line", () => {
  const parser = new SSEParser();
  assert.deepEqual(parser.feed("data\n\ndata:\ndata: b\n\n"), [
    { event: "message", data: "" },
    { event: "message", data: "\nb" },
  ]);
});

test("end() delivers an event the stream did not close with a blank line", () => {
  const parser = new SSEParser();
  assert.deepEqual(parser.feed("data: 尾巴"), []);
  assert.deepEqual(parser.end(), [{ event: "message", data: "尾巴" }]);
});

test("readChatEvent: deltas, the final chunk with citations, [DONE], error objects", () => {
  assert.deepEqual(readChatEvent(chunk("你好").slice(6, -2)), { delta: "你好", final: null });
  const final = readChatEvent(JSON.stringify(FINAL));
  assert.equal(final.delta, "");
  assert.deepEqual(final.final, { citations: FINAL.citations, refused: false, reason: "" });
  const refused = readChatEvent(JSON.stringify({ choices: [{ delta: {}, finish_reason: "stop" }], refused: true,
    reason: "weak evidence: coverage 0.20 (missing 山丹县), dense 0.81" }));
  assert.equal(refused.final.refused, true);
  assert.deepEqual(refused.final.citations, []);
  assert.deepEqual(readChatEvent("[DONE]"), { done: true });
  assert.deepEqual(readChatEvent('{"error": {"type": "x", "message": "坏了"}}'), { error: { type: "x", message: "坏了" } });
});

test("readChatStream reads a byte stream split inside UTF-8 characters", async () => {
  const bytes = new TextEncoder().encode(STREAM);
  const body = new ReadableStream({
    start(controller) {
      for (let i = 0; i < bytes.length; i += 5) controller.enqueue(bytes.slice(i, i + 5));
      controller.close();
    },
  });
  const deltas = [];
  const final = await readChatStream(body, (d) => deltas.push(d));
  assert.deepEqual(deltas, ["阳山", "县排名", "第一。"]);
  assert.deepEqual(final.citations, FINAL.citations);
  assert.equal(final.refused, false);
});

test("readChatStream raises the server's error message", async () => {
  const body = new Blob(['data: {"error": {"message": "模型出错"}}\n\n']).stream();
  await assert.rejects(readChatStream(body, () => {}), /模型出错/);
});
