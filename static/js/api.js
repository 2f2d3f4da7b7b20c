// The server's HTTP API: JSON requests, the SSE chat stream, and the SSE parser it uses.
//
// A streaming transport (this module's streamChat, socket.js's SocketTransport.stream, and
// chatOnce for non-streamed replies) is called as `transport(request, handlers)`, where handlers
// are {start({session_id, turn_id, model}), token(text, seq), reasoning(text, seq),
// toolCall(kind, {index, id, name, arguments}, seq) (kind: start | delta | end), done(stats),
// error(ApiError), reconnecting(bool)}, and returns {stop(), finished}. The request carries its own `turn_id`, so
// Stop works before the first byte. A turn outlives its connection on the server: a dropped
// stream is followed again from the last event received (seq), so nothing is lost or doubled;
// followTurn attaches to a turn already running (a reload, another tab). The
// handle: {cancel(), detach(), finished}: cancel() stops the turn on the server (its final
// event still arrives), detach() stops following it here (no handler is called again);
// `finished` resolves when the turn is over either way.

export class ApiError extends Error {
  constructor(type, message, status = 0) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

export const NETWORK_ERROR = "network_error";
const RESUME_TRIES = 30;          // about a minute of reconnecting before giving up
const RESUME_DELAYS_MS = [250, 500, 1000, 2000];

export function newTurnId() {
  return crypto.randomUUID();
}

// The access token (Settings) for servers with auth on; sent on every request when set.
let accessToken = "";

export function setAccessToken(token) {
  accessToken = token.trim();
}

export function getAccessToken() {
  return accessToken;
}

function withAuth(headers = {}) {
  return accessToken ? { ...headers, Authorization: `Bearer ${accessToken}` } : headers;
}

// A refused token, in words that say what to do about it.
export function authError(serverMessage) {
  const advice = accessToken
    ? "The access token in Settings was refused; paste a new one there."
    : "This server needs an access token; paste one in Settings.";
  return new ApiError("authentication_error", `${advice} (Server: ${serverMessage})`, 401);
}

const badEvent = () => new ApiError("bad_response", "The server sent an event that is not valid JSON.");

function networkError() {
  return new ApiError(NETWORK_ERROR, "Could not reach the server. Check that Rill is running, then retry.");
}

// An HTTP error response as an ApiError, whatever its body.
async function errorFrom(response) {
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

async function post(path, body, signal) {
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

async function getJSON(path) {
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


// Server-Sent Events per the WHATWG HTML standard (9.2.6): lines end with CR, LF or CRLF;
// `data` lines join with "\n"; lines starting with ":" are comments; a blank line dispatches;
// an event still open when the stream ends is dropped. Feed it decoded text in any pieces.
export class SSEParser {
  constructor() {
    this.line = "";         // the unfinished line carried over from the last piece
    this.skipLF = false;    // the last piece ended with CR: a leading LF belongs to it
    this.data = "";
    this.type = "";
    this.lastEventId = "";
    this.comments = [];
  }

  push(text) {
    const events = [];
    if (this.skipLF && text.startsWith("\n")) text = text.slice(1);
    this.skipLF = false;
    const lines = /\r\n|\r|\n/g;
    let start = 0;
    let match;
    while ((match = lines.exec(text)) !== null) {
      const line = this.line + text.slice(start, match.index);
      this.line = "";
      start = lines.lastIndex;
      if (match[0] === "\r" && start === text.length) this.skipLF = true;
      const event = this.processLine(line);
      if (event) events.push(event);
    }
    this.line += text.slice(start);
    return events;
  }

  processLine(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) {
      this.comments.push(line.slice(1));
      return null;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data += value + "\n";
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    // `retry` only matters to EventSource's reconnection; other fields are ignored.
    return null;
  }

  dispatch() {
    const { data, type } = this;
    this.data = "";
    this.type = "";
    if (data === "") return null;
    return { type: type || "message", data: data.slice(0, -1), id: this.lastEventId };
  }
}

// The events of an SSE response body, as they arrive.
export async function* readEvents(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  const parser = new SSEParser();
  try {
    while (!signal?.aborted) {
      const { value, done } = await reader.read();
      if (done) {
        // Complete a character split across the last two reads; an unfinished event is dropped.
        yield* parser.push(decoder.decode());
        return;
      }
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// The tool call events by their SSE name: the kind handlers.toolCall gets.
export const TOOL_CALL_KINDS = { tool_call_start: "start", tool_call_delta: "delta", tool_call_end: "end" };

// Dispatches one turn's SSE events to the handlers; returns true once the turn has ended.
async function dispatch(response, state, handlers, signal) {
  for await (const event of readEvents(response.body, signal)) {
    if (state.stopped) return true;
    const seq = Number(event.id);
    if (Number.isInteger(seq) && seq <= state.lastSeq) continue; // had it already
    if (Number.isInteger(seq)) state.lastSeq = seq;
    const data = JSON.parse(event.data);
    if (event.type === "start") {
      state.turnId = data.turn_id;
      handlers.start(data);
    } else if (event.type === "token") {
      handlers.token(data.token, seq);
    } else if (event.type === "reasoning") {
      handlers.reasoning(data.reasoning, seq);
    } else if (TOOL_CALL_KINDS[event.type]) {
      handlers.toolCall(TOOL_CALL_KINDS[event.type], data, seq);
    } else if (event.type === "done") {
      handlers.done(data);
      return true;
    } else if (event.type === "error") {
      handlers.error(new ApiError(data.error.type, data.error.message));
      return true;
    }
  }
  return false;
}

// Follows a turn from state.lastSeq until it ends, reconnecting while the network is away.
async function follow(state, handlers, controller) {
  for (let attempt = 0; attempt < RESUME_TRIES && !state.stopped; attempt++) {
    if (attempt) {
      handlers.reconnecting?.(true);
      await new Promise((resolve) => setTimeout(resolve, RESUME_DELAYS_MS[Math.min(attempt - 1, RESUME_DELAYS_MS.length - 1)]));
      if (state.stopped) return;
    }
    let response;
    try {
      response = await fetch(`/api/chat/turns/${encodeURIComponent(state.turnId)}/events`, {
        headers: withAuth(state.lastSeq >= 0 ? { "Last-Event-ID": String(state.lastSeq) } : {}),
        signal: controller.signal,
      });
    } catch (err) {
      if (state.stopped) return;
      continue; // offline for now
    }
    if (response.status === 204 || response.status === 404) {
      return handlers.error(new ApiError("connection_lost", "The server no longer has this reply (it restarted, or the reply expired)."));
    }
    if (!response.ok) return handlers.error(await errorFrom(response));
    handlers.reconnecting?.(false);
    try {
      if (await dispatch(response, state, handlers, controller.signal)) return;
    } catch (err) {
      if (state.stopped) return;
      if (err instanceof SyntaxError) return handlers.error(badEvent());
    }
  }
  if (!state.stopped) handlers.error(new ApiError("connection_lost", "The connection was lost and the reply could not be followed again."));
}

// cancel(): stop the turn on the server (its final event still comes); detach(): stop
// following it here (the turn goes on; no handler is called again).
function controls(state, controller, finished) {
  return {
    finished,
    cancel() {
      if (state.turnId) cancelTurn(state.turnId);
    },
    detach() {
      if (state.stopped) return;
      state.stopped = true;
      controller.abort();
    },
  };
}

// POST /api/chat/stream, then (if the connection drops before the end) the turn's events again.
export function streamChat(request, handlers) {
  const controller = new AbortController();
  const state = { turnId: request.turn_id, lastSeq: -1, stopped: false };

  async function run() {
    try {
      const response = await post("/api/chat/stream", request, controller.signal);
      if (await dispatch(response, state, handlers, controller.signal)) return;
    } catch (err) {
      if (state.stopped) return;
      if (err instanceof ApiError) return handlers.error(err); // refused: nothing runs on the server
      if (err instanceof SyntaxError) return handlers.error(badEvent());
      // Otherwise the connection dropped mid-reply: the turn goes on, follow it again.
    }
    if (!state.stopped) await follow(state, handlers, controller);
  }

  return controls(state, controller, run());
}

// A turn already running on the server (after a reload, or started in another tab), from the
// event after `lastSeq`.
export function followTurn(turnId, lastSeq, handlers) {
  const controller = new AbortController();
  const state = { turnId, lastSeq, stopped: false };
  return controls(state, controller, follow(state, handlers, controller));
}

// POST /api/chat: the whole reply at once, behind the same interface. Stopping cancels the turn
// on the server by the id the request chose.
export function chatOnce(request, handlers) {
  const controller = new AbortController();
  const state = { turnId: request.turn_id, lastSeq: -1, stopped: false };

  async function run() {
    try {
      const response = await post("/api/chat", request, controller.signal);
      const { reply, session_id, turn_id, model, reasoning, tool_calls: calls, ...stats } = await response.json();
      if (state.stopped) return;
      handlers.start({ session_id, turn_id, model });
      if (reasoning) handlers.reasoning(reasoning, null); // where the server sends them
      (calls || []).forEach(({ id, name, arguments: args }, index) => {
        handlers.toolCall("start", { index, id, name }, null);
        handlers.toolCall("delta", { index, arguments: args || "" }, null);
        handlers.toolCall("end", { index }, null);
      });
      if (reply) handlers.token(reply, null);
      handlers.done({ done: true, ...stats });
    } catch (err) {
      if (state.stopped) return;
      handlers.error(err instanceof ApiError ? err : networkError());
    }
  }

  return controls(state, controller, run());
}
