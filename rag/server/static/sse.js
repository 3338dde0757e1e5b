// Server-sent events: a streaming parser (chunks may split lines anywhere) and the chat chunk reader.

/** Incremental text/event-stream parser: feed() decoded text, get back the complete events. */
export class SSEParser {
  constructor() {
    this.buffer = "";
    this.data = [];
    this.event = "";
  }

  /** Returns the events completed by this chunk, each {event, data}. */
  feed(chunk) {
    this.buffer += chunk;
    const events = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
      if (!match || (match[0] === "\r" && match.index === this.buffer.length - 1)) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event) events.push(event);
    }
    return events;
  }

  /** The event still open when the stream ends without a blank line, if any. */
  end() {
    const events = this.feed("\n\n");
    this.buffer = "";
    return events;
  }

  line(line) {
    if (line === "") {
      if (!this.data.length) return null;
      const event = { event: this.event || "message", data: this.data.join("\n") };
      this.data = [];
      this.event = "";
      return event;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    return null;
  }
}

/**
 * What one chat.completion.chunk event means for the page:
 * {done: true} for [DONE], else {delta, final} where final (last chunk) carries citations, refused, reason.
 */
export function readChatEvent(data) {
  if (data.trim() === "[DONE]") return { done: true };
  const chunk = JSON.parse(data);
  if (chunk.error) return { error: chunk.error };
  const choice = (chunk.choices || [])[0] || {};
  const delta = (choice.delta && typeof choice.delta.content === "string") ? choice.delta.content : "";
  const final = choice.finish_reason != null || "citations" in chunk || "refused" in chunk
    ? { citations: chunk.citations || [], refused: Boolean(chunk.refused), reason: chunk.reason || "" }
    : null;
  return { delta, final };
}

/** Reads a fetch Response body of chat chunks, calling onDelta(text) per piece; resolves to the final info. */
export async function readChatStream(body, onDelta) {
  const parser = new SSEParser();
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let final = null;
  const handle = (events) => {
    for (const { data } of events) {
      const item = readChatEvent(data);
      if (item.done) return true;
      if (item.error) throw new Error(item.error.message || "服务器出错");
      if (item.delta) onDelta(item.delta);
      if (item.final) final = item.final;
    }
    return false;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      handle(parser.end());
      break;
    }
    if (handle(parser.feed(value))) {
      reader.cancel().catch(() => {});
      break;
    }
  }
  return final;
}
