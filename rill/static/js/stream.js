// A chat over HTTP: the SSE stream of a turn, followed again after a drop, or one JSON reply.
//
// A streaming transport (this module's streamChat, socket.js's SocketTransport.stream, and
// chatOnce for non-streamed replies) is called as `transport(request, handlers)`, where handlers
// are {start({thread_id, question_id, reply_id, turn_id, model}), token(text, seq), reasoning(text, seq),
// toolCall(kind, {index, id, name, arguments, ...}, seq) (kind: start | delta | end | asked |
// answered | result: events.js's TOOL_CALL_KINDS), done(stats), error(ApiError),
// reconnecting(bool)}, and returns {stop(), finished}. The request carries its own `turn_id`, so
// Stop works before the first byte. A turn outlives its connection on the server: a dropped
// stream is followed again from the last event received (seq), so nothing is lost or doubled;
// followTurn attaches to a turn already running (a reload, another tab). The
// handle: {cancel(), detach(), approve(callId, approved), finished}: cancel() stops the turn on the
// server (its final event still arrives), detach() stops following it here (no handler is called
// again), approve() answers a tool call waiting for the user;
// `finished` resolves when the turn is over either way.

import { TOOL_CALL_KINDS } from "./events.js";
import { ApiError, approveCall, badEvent, cancelTurn, errorFrom, networkError, post, withAuth } from "./http.js";
import { readEvents } from "./sse.js";

export function newTurnId() {
  return crypto.randomUUID();
}

const RESUME_TRIES = 30;          // about a minute of reconnecting before giving up
const RESUME_DELAYS_MS = [250, 500, 1000, 2000];

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
// following it here (the turn goes on; no handler is called again); approve(callId, approved):
// answer a tool call that waits for approval.
function controls(state, controller, finished) {
  return {
    finished,
    cancel() {
      if (state.turnId) cancelTurn(state.turnId);
    },
    approve: (callId, approved) => approveCall(state.turnId, callId, approved),
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
      const { reply, session_id, thread_id, question_id, reply_id, turn_id, model, reasoning, tool_calls: calls, ...stats } = await response.json();
      if (state.stopped) return;
      handlers.start({ session_id, thread_id, question_id, reply_id, turn_id, model });
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
