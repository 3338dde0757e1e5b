// Interface wording: plain-Chinese refusal reasons, citation labels, numbers and dates.

// The server's reason starts with the name of the check that refused (rag/refuse.py), then its numbers.
const REASONS = [
  [/^not_a_question/, () => "收到的不是一个问题。"],
  [/^coverage.*\(missing (.+)\)/, (m) => `已收录的文档中没有一篇讲到问题里的“${m[1]}”。`],
  [/^coverage/, () => "已收录的文档中没有一篇讲到问题所问的内容。"],
  [/^model_not_found|found no answer/i, () => "模型在检索到的段落中没有找到答案。"],
  [/^echo/, () => "模型只是重复了问题，没有给出答案。"],
  [/^invented_numbers/, () => "回答中的数字在文档里找不到，为避免编造，不作回答。"],
  [/^miscounted/, () => "回答中的数字在文档里说的是别的事情。"],
  [/^answer_type.*who-question/, () => "问的是谁，回答里却没有文档中提到的人或事物。"],
  [/^answer_type.*how-many/, () => "问的是数量，回答里却没有所问单位的数字。"],
  [/^answer_type.*when-question/, () => "问的是时间，回答里却没有日期。"],
  [/^support/, () => "文档里没有一句话能支持这个回答。"],
];

/** The reason of a refusal in plain Chinese; `reason` is the server's technical note (may be empty). */
export function refusalReason(reason) {
  const text = String(reason || "");
  for (const [pattern, say] of REASONS) {
    const match = pattern.exec(text);
    if (match) return say(match);
  }
  return "已收录的文档中没有足够的依据回答这个问题。";
}

/** "第 3 页" / "第 3–5 页" / "" for a citation's optional page fields. */
export function pageLabel(citation) {
  const { page, page_end: end } = citation || {};
  if (page == null) return "";
  return end != null && end !== page ? `第 ${page}–${end} 页` : `第 ${page} 页`;
}

/** Section path for display ("一、总体情况 > （一）学校"), or a dash when the passage has none. */
export function sectionLabel(section) {
  return section && section.trim() ? section : "（无章节）";
}

/** "12,345 字 · 40 段 · 2026-11-24 10:03" for a document record. */
export function documentMeta(doc) {
  const when = formatTime(doc.ingested_at);
  return [`${Number(doc.characters).toLocaleString("zh-CN")} 字`, `${doc.chunks} 段`, when].filter(Boolean).join(" · ");
}

/** An ISO time as local "YYYY-MM-DD HH:MM"; the raw value when it does not parse. */
export function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The message of an error envelope {"error": {"type", "message"}}, or a fallback naming the status. */
export function errorMessage(body, status) {
  const message = body && body.error && body.error.message;
  return message ? String(message) : `请求失败（HTTP ${status}）`;
}

/** The text a refused streamed answer should show: the server appends the refusal after a blank line. */
export function refusalText(streamed) {
  const text = String(streamed).trim();
  const cut = text.lastIndexOf("\n\n");
  return cut >= 0 ? text.slice(cut + 2).trim() : text;
}
