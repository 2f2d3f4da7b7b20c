// The server's HTTP API apart from the chat stream: JSON requests with the access token, and
// every error as an ApiError that says what happened in words.

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

// The signed-in user's usage of the last `days` UTC days (GET /api/usage).
export function getUsage(days) {
  return getJSON(`/api/usage?days=${encodeURIComponent(days)}`);
}

// A session made from the browser's own copy of a chat the server no longer has.
export async function restoreSession(messages) {
  const response = await post("/api/chat/sessions", { messages });
  return response.json();
}

// Best effort: the turn may already have ended.
export function cancelTurn(turnId) {
  return fetch(`/api/chat/turns/${encodeURIComponent(turnId)}/cancel`, { method: "POST", keepalive: true, headers: withAuth() })
    .catch(() => {});
}
