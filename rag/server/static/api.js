// Talking to the server: same origin only, the API key (asked once, on the first 401) as a bearer token.
import { errorMessage } from "./text.js";

const KEY = "rag.apiKey";
let asking = null;

/** An error carrying the server's message (from its error envelope) and the HTTP status. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function authHeaders() {
  const key = localStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** Shows the key dialog once for all waiting callers; resolves when a key is stored. */
function askKey(wrong) {
  if (!asking) {
    asking = new Promise((resolve) => {
      const dialog = document.getElementById("key-dialog");
      const input = document.getElementById("key-input");
      document.getElementById("key-hint").textContent = wrong
        ? "密钥不正确，请重新输入。"
        : "服务器要求 API 密钥（RAG_API_KEY）。密钥只保存在这个浏览器里。";
      input.value = "";
      dialog.addEventListener("close", () => {
        const key = input.value.trim();
        if (key) localStorage.setItem(KEY, key);
        asking = null;
        resolve();
      }, { once: true });
      dialog.showModal();
      input.focus();
    });
  }
  return asking;
}

/** fetch() on the server's origin with the key; on 401 asks for a key and tries again. */
export async function request(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { ...(options.headers || {}), ...authHeaders() };
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401 || attempt >= 3) return response;
    const hadKey = Boolean(localStorage.getItem(KEY));
    if (hadKey) localStorage.removeItem(KEY);
    await askKey(hadKey);
  }
}

/** JSON of a successful response; else an ApiError with the server's message. */
export async function json(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw new ApiError(errorMessage(body, response.status), response.status);
  return body;
}

export async function getJSON(path) {
  return json(await request(path));
}

/**
 * Uploads one file with byte progress, then follows the job when the server answers 202.
 * onProgress({phase: "upload"|"index", done, total}); resolves to the document record.
 */
export async function upload(file, onProgress) {
  for (let attempt = 0; ; attempt++) {
    const { status, body, location } = await send(file, onProgress);
    if (status === 401 && attempt < 3) {
      const hadKey = Boolean(localStorage.getItem(KEY));
      if (hadKey) localStorage.removeItem(KEY);
      await askKey(hadKey);
      continue;
    }
    if (status === 201 || status === 200) return body;
    if (status === 202) return followJob(location || `/v1/jobs/${body.id}`, body, onProgress);
    throw new ApiError(errorMessage(body, status), status);
  }
}

function send(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/documents");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => onProgress({ phase: "upload", done: e.loaded, total: e.total || file.size });
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      resolve({ status: xhr.status, body, location: xhr.getResponseHeader("Location") });
    };
    xhr.onerror = () => reject(new ApiError("网络错误：无法连接服务器", 0));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/** Deletes a document; follows the job when the server answers 202. */
export async function remove(docId) {
  const response = await request(`/v1/documents/${encodeURIComponent(docId)}`, { method: "DELETE" });
  const body = await json(response);
  if (response.status === 202) {
    await followJob(response.headers.get("Location") || `/v1/jobs/${body.id}`, body, () => {});
  }
}

/** Polls a job (interface: {id, status, progress, document, error}) until it is done or failed. */
async function followJob(location, job, onProgress, interval = 400) {
  for (;;) {
    if (job.progress) onProgress({ phase: "index", done: job.progress.done, total: job.progress.total });
    if (job.status === "done") return job.document;
    if (job.status === "failed") {
      throw new ApiError((job.error && job.error.message) || "索引失败", 0);
    }
    await new Promise((r) => setTimeout(r, interval));
    job = await getJSON(location);
  }
}
