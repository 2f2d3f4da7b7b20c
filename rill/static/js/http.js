// The server's HTTP API apart from the chat stream: JSON requests with the access token, and
// every error as an ApiError that says what happened in words.
import { readEvents } from "./sse.js";

export class ApiError extends Error {
  constructor(type, message, status = 0) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

export const NETWORK_ERROR = "network_error";

// The access token (Settings) for servers with auth on; sent on every request when set.
let accessToken = "";

export function setAccessToken(token) {
  accessToken = token.trim();
}

export function getAccessToken() {
  return accessToken;
}

export function withAuth(headers = {}) {
  return accessToken ? { ...headers, Authorization: `Bearer ${accessToken}` } : headers;
}

// A refused token, in words that say what to do about it.
export function authError(serverMessage) {
  const advice = accessToken
    ? "The access token in Settings was refused; paste a new one there."
    : "This server needs an access token; paste one in Settings.";
  return new ApiError("authentication_error", `${advice} (Server: ${serverMessage})`, 401);
}

export const badEvent = () => new ApiError("bad_response", "The server sent an event that is not valid JSON.");

export function networkError() {
  return new ApiError(NETWORK_ERROR, "Could not reach the server. Check that Rill is running, then retry.");
}

// An HTTP error response as an ApiError, whatever its body.
export async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's error page, say
  }
  const error = body && body.error;
  if (response.status === 401) return authError(error?.message || "unauthorized");
  if (error && typeof error.message === "string") return new ApiError(error.type || "error", error.message, response.status);
  return new ApiError("http_error", `The server answered ${response.status} ${response.statusText}.`.trim(), response.status);
}

export async function post(path, body, signal) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: withAuth({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw networkError();
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function getJSON(path) {
  let response;
  try {
    response = await fetch(path, { headers: withAuth({ Accept: "application/json" }) });
  } catch {
    throw networkError();
  }
  if (!response.ok) throw await errorFrom(response);
  try {
    return await response.json();
  } catch {
    throw new ApiError("bad_response", "The server's answer is not valid JSON.", response.status);
  }
}

export function getModels() {
  return getJSON("/api/models");
}

// The model listing now and at each change (a pull's progress), until `signal` aborts.
export async function* modelEvents(signal) {
  let response;
  try {
    response = await fetch("/api/models/events", { headers: withAuth({ Accept: "text/event-stream" }), signal });
  } catch (err) {
    if (err.name === "AbortError") return;
    throw networkError();
  }
  if (!response.ok) throw await errorFrom(response);
  for await (const event of readEvents(response.body, signal)) {
    if (event.type === "models") yield JSON.parse(event.data);
  }
}

export function getMcpServers() {
  return getJSON("/api/mcp");
}

export const modelsApi = {
  pull: (name) => send("POST", "/api/models/pull", { name }),
  cancel: (id) => send("POST", "/api/models/cancel", { id }),
};

// The signed-in user's usage of the last `days` UTC days (GET /api/usage).
export function getUsage(days) {
  return getJSON(`/api/usage?days=${encodeURIComponent(days)}`);
}

// A request with a JSON body (or none); its JSON answer, null for a 204, the text of anything else.
export async function send(method, path, body = undefined) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: withAuth(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw networkError();
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  return (response.headers.get("Content-Type") || "").startsWith("application/json") ? response.json() : response.text();
}

// The threads on the server (STREAMING_API_DOCS.md, Threads).
const threadPath = (id) => `/api/threads/${encodeURIComponent(id)}`;
export const threadsApi = {
  changes: (since) => getJSON(`/api/threads?since=${since}`),
  tree: (id) => getJSON(threadPath(id)),
  path: (id, params) => getJSON(`${threadPath(id)}/path?${new URLSearchParams(
    Object.entries(params).filter(([, value]) => value != null))}`),
  update: (id, fields) => send("PATCH", threadPath(id), fields),
  remove: (id) => send("DELETE", threadPath(id)),
  editMessage: (id, messageId, parts) => send("PATCH", `${threadPath(id)}/messages/${encodeURIComponent(messageId)}`, { parts }),
  removeMessage: (id, messageId) => send("DELETE", `${threadPath(id)}/messages/${encodeURIComponent(messageId)}`),
  fork: (id, leaf) => send("POST", `${threadPath(id)}/fork`, { leaf }),
  exportAs: (id, format) => send("GET", `${threadPath(id)}/export?format=${format}`),
  share: (id) => send("POST", `${threadPath(id)}/share`, {}),
  shares: (id) => getJSON(`${threadPath(id)}/shares`),
  unshare: (id, token) => send("DELETE", `${threadPath(id)}/share/${encodeURIComponent(token)}`),
  import: (data) => send("POST", "/api/threads/import", data),
  search: (query) => getJSON(`/api/search?q=${encodeURIComponent(query)}`),
};

// Run (approved) or decline a tool call that waits for the user; an ApiError when it cannot be
// (answered already, or the turn ended).
export function approveCall(turnId, callId, approved) {
  return send("POST", `/api/chat/turns/${encodeURIComponent(turnId)}/approve`, { tool_call_id: callId, approved });
}

// Best effort: the turn may already have ended.
export function cancelTurn(turnId) {
  return fetch(`/api/chat/turns/${encodeURIComponent(turnId)}/cancel`, { method: "POST", keepalive: true, headers: withAuth() })
    .catch(() => {});
}

// The bytes at a file's path (/api/files/<id>/preview, a share's file) as an object URL, kept for
// the page (an id's bytes never change), or null when they cannot be read. Fetched with the access
// token, which an <img src> could not send.
const fileUrls = new Map();

export function fileUrl(path) {
  if (!fileUrls.has(path)) {
    fileUrls.set(path, fetch(path, { headers: withAuth() })
      .then((response) => (response.ok ? response.blob() : null))
      .then((blob) => (blob ? URL.createObjectURL(blob) : null))
      .catch(() => null));
  }
  return fileUrls.get(path);
}
