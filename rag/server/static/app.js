// The chat page: conversation, streamed answers, citation markers, the source pane and the documents panel.
// Model and document text is always inserted as text nodes (textContent), never parsed as HTML.
import { ApiError, getJSON, json, remove, request, upload } from "./api.js";
import { splitSpan } from "./highlight.js";
import { readChatStream } from "./sse.js";
import { documentMeta, pageLabel, refusalReason, refusalText, sectionLabel } from "./text.js";

const $ = (id) => document.getElementById(id);
const state = { conversation: [], controller: null, documents: new Map(), listed: "", opened: 0 };
const texts = new Map(); // doc_id -> {sha256, text}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

// --- chat ------------------------------------------------------------------------------------------
function addMessage(role, text) {
  const item = el("li", `msg ${role}`);
  const body = el("div", "body", text);
  item.append(body);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return { item, body };
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("question").toggleAttribute("aria-busy", busy);
}

async function ask(question) {
  // This turn belongs to the conversation it was asked in, even if 新对话 starts another meanwhile.
  const turns = state.conversation;
  turns.push({ role: "user", content: question });
  addMessage("user", question);
  const { item, body } = addMessage("assistant streaming", "");
  const live = document.createTextNode("");
  body.append(live);
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  let streamed = "";
  try {
    const response = await request("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: "rag", messages: turns, stream: true }),
      signal: controller.signal,
    });
    if (!response.ok) await json(response);
    const final = await readChatStream(response.body, (delta) => {
      streamed += delta;
      live.data = streamed;
      item.scrollIntoView({ block: "end" });
    });
    turns.push(finishAnswer(item, body, streamed, final));
  } catch (error) {
    if (error.name === "AbortError") {
      item.classList.add("stopped");
      item.append(el("p", "note", "已停止"));
      turns.push({ role: "assistant", content: streamed });
    } else {
      turns.pop();
      item.classList.add("error");
      body.textContent = error instanceof ApiError ? error.message : `出错了：${error.message}`;
    }
  } finally {
    item.classList.remove("streaming");
    if (state.controller === controller) state.controller = null;
    setBusy(false);
  }
}

/** Shows the finished answer (or refusal); returns the assistant turn to remember. */
function finishAnswer(item, body, streamed, final) {
  const result = final || { citations: [], refused: false, reason: "" };
  if (result.refused) {
    const shown = refusalText(streamed);
    body.textContent = shown;
    item.classList.add("refused");
    item.prepend(el("p", "label", "没有找到答案"));
    item.append(el("p", "reason", `原因：${refusalReason(result.reason)}`));
    return { role: "assistant", content: shown };
  }
  body.textContent = streamed.trim();
  const marks = el("span", "cites");
  result.citations.forEach((citation, i) => marks.append(citeButton(citation, i + 1)));
  body.append(marks);
  return { role: "assistant", content: streamed.trim() };
}

function citeButton(citation, n) {
  const button = el("button", "cite", String(n));
  button.type = "button";
  button.dataset.docId = citation.doc_id;
  button.dataset.start = citation.start;
  button.dataset.end = citation.end;
  button.setAttribute("aria-label", `来源 ${n}：${titleOf(citation.doc_id)}`);
  button.addEventListener("mouseenter", () => showTip(button, citation));
  button.addEventListener("focus", () => showTip(button, citation));
  button.addEventListener("mouseleave", hideTip);
  button.addEventListener("blur", hideTip);
  button.addEventListener("click", () => {
    hideTip();
    openSource(citation);
  });
  return button;
}

function titleOf(docId) {
  const doc = state.documents.get(docId);
  return doc ? doc.title : docId;
}

function showTip(anchor, citation) {
  const tip = $("tip");
  tip.replaceChildren(
    el("strong", "tip-title", titleOf(citation.doc_id)),
    el("span", "tip-section", [sectionLabel(citation.section), pageLabel(citation)].filter(Boolean).join(" · ")),
    el("q", "tip-text", citation.text),
  );
  tip.hidden = false;
  const box = anchor.getBoundingClientRect();
  const width = Math.min(360, window.innerWidth - 16);
  tip.style.maxWidth = `${width}px`;
  tip.style.left = `${Math.max(8, Math.min(box.left, window.innerWidth - width - 8))}px`;
  const below = box.bottom + 8;
  tip.style.top = `${below + tip.offsetHeight < window.innerHeight ? below : Math.max(8, box.top - tip.offsetHeight - 8)}px`;
}

function hideTip() {
  $("tip").hidden = true;
}

function stop() {
  if (state.controller) state.controller.abort();
}

function newConversation() {
  stop();
  state.conversation = [];
  $("messages").replaceChildren();
  closeSource();
  $("question").value = "";
  $("question").focus();
}

// --- source pane -----------------------------------------------------------------------------------
async function documentText(docId) {
  const known = state.documents.get(docId);
  const cached = texts.get(docId);
  if (cached && known && cached.sha256 === known.sha256) return cached;
  const doc = await getJSON(`/v1/documents/${encodeURIComponent(docId)}/text`);
  texts.set(docId, doc);
  return doc;
}

async function openSource(citation) {
  const opened = ++state.opened; // a later click wins over a slower earlier load
  const pane = $("source");
  const textBox = $("source-text");
  pane.hidden = false;
  document.body.classList.add("source-open");
  $("source-title").textContent = titleOf(citation.doc_id);
  $("source-meta").textContent = [sectionLabel(citation.section), pageLabel(citation)].filter(Boolean).join(" · ");
  textBox.textContent = "正在加载原文…";
  try {
    const doc = await documentText(citation.doc_id);
    if (opened !== state.opened) return;
    $("source-title").textContent = doc.title || citation.doc_id;
    const { before, mark, after } = splitSpan(doc.text, citation.start, citation.end);
    const highlight = el("mark", "hit", mark);
    textBox.replaceChildren(document.createTextNode(before), highlight, document.createTextNode(after));
    highlight.scrollIntoView({ block: "center" });
  } catch (error) {
    if (opened !== state.opened) return;
    textBox.textContent = error instanceof RangeError
      ? "这条出处与当前文档不一致（文档可能已更新），请重新提问。"
      : `无法加载原文：${error.message}`;
  }
}

function closeSource() {
  $("source").hidden = true;
  document.body.classList.remove("source-open");
}

// --- documents -------------------------------------------------------------------------------------
async function refreshDocuments() {
  let list;
  try {
    list = await getJSON("/v1/documents");
  } catch (error) {
    $("docs-empty").hidden = false;
    $("docs-empty").textContent = `无法读取文档列表：${error.message}`;
    return;
  }
  const key = JSON.stringify(list.data);
  if (key === state.listed) return;
  state.listed = key;
  state.documents = new Map(list.data.map((d) => [d.id, d]));
  const items = list.data.map(documentItem);
  $("doc-list").replaceChildren(...items);
  $("doc-count").textContent = `（${list.data.length}）`;
  $("docs-empty").hidden = list.data.length > 0;
  $("docs-empty").textContent = "还没有文档。上传文本、Markdown、PDF、Word 或网页文件，就可以提问了。";
}

function documentItem(doc) {
  const item = el("li", "doc");
  item.dataset.id = doc.id;
  const info = el("div", "doc-info");
  info.append(el("span", "doc-title", doc.title || doc.id), el("span", "doc-meta muted", documentMeta(doc)));
  info.title = doc.id;
  const remove = el("button", "ghost danger small", "删除");
  remove.type = "button";
  remove.setAttribute("aria-label", `删除 ${doc.title || doc.id}`);
  remove.addEventListener("click", () => removeDocument(doc, item));
  item.append(info, remove);
  return item;
}

async function removeDocument(doc, item) {
  if (!window.confirm(`确定删除「${doc.title || doc.id}」吗？删除后不能再引用它回答问题。`)) return;
  item.classList.add("busy");
  try {
    await remove(doc.id);
    texts.delete(doc.id);
  } catch (error) {
    window.alert(`删除失败：${error.message}`);
  }
  item.classList.remove("busy");
  await refreshDocuments();
}

async function uploadFiles(files) {
  for (const file of files) {
    const row = el("li", "upload");
    const name = el("span", "upload-name", file.name);
    const bar = el("progress");
    bar.max = 1;
    bar.value = 0;
    const status = el("span", "upload-status muted", "上传中…");
    row.append(name, bar, status);
    $("uploads").prepend(row);
    try {
      const doc = await upload(file, ({ phase, done, total }) => {
        bar.max = total || 1;
        bar.value = done;
        status.textContent = phase === "upload" ? `上传中 ${percent(done, total)}` : `索引中 ${done}/${total}`;
        if (phase === "upload" && done >= total) status.textContent = "索引中…";
      });
      row.classList.add("ok");
      status.textContent = `已收录：${doc.title || doc.id}`;
      bar.value = bar.max;
      setTimeout(() => row.remove(), 4000);
    } catch (error) {
      row.classList.add("failed");
      bar.remove();
      status.textContent = error.message;
      const close = el("button", "ghost small", "×");
      close.type = "button";
      close.setAttribute("aria-label", "关闭");
      close.addEventListener("click", () => row.remove());
      row.append(close);
    }
    await refreshDocuments();
  }
}

function percent(done, total) {
  return total ? `${Math.round((100 * done) / total)}%` : "";
}

// --- wiring ----------------------------------------------------------------------------------------
function wire() {
  const question = $("question");
  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = question.value.trim();
    if (!text || state.controller) return;
    question.value = "";
    ask(text);
  });
  question.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter is a new line; Enter that confirms an IME composition does neither.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      $("ask").requestSubmit();
    }
  });
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", newConversation);
  $("source-close").addEventListener("click", closeSource);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSource();
  });
  $("docs-toggle").addEventListener("click", () => {
    const open = document.body.classList.toggle("docs-open");
    $("docs-toggle").setAttribute("aria-expanded", String(open));
  });

  const input = $("file-input");
  input.addEventListener("change", () => {
    uploadFiles([...input.files]);
    input.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") input.click();
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    uploadFiles([...event.dataTransfer.files]);
  });

  refreshDocuments();
  // Live: other tabs, the CLI or other users may change the index.
  setInterval(() => {
    if (!document.hidden) refreshDocuments();
  }, 5000);
  question.focus();
}

wire();
