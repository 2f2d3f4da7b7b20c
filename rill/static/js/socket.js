// Socket.IO transport: the same turns as stream.js's streamChat, over one shared connection.
// Every event carries its turn's id and seq: events are routed by turn and deduplicated by seq.
// When the connection drops, Socket.IO reconnects and every turn still followed is resumed
// (chat_resume) from the last seq it got.
import { io } from "../vendor/socket.io.esm.min.js";
import { EVENTS, KIND_OF, TOOL_CALL_KINDS } from "./events.js";
import { ApiError, NETWORK_ERROR, authError, getAccessToken } from "./http.js";

const CONNECT_TIMEOUT_MS = 5000;
const ACK_TIMEOUT_MS = 15000;
const RECONNECT_GIVE_UP_MS = 60000;

function connected(socket) {
  if (socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const finish = (error) => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
      if (error) reject(error);
      else resolve();
    };
    const onConnect = () => finish(null);
    // The server refusing the connection (a missing or bad token) is not a TransportError: no
    // retry helps then. Otherwise the socket goes on reconnecting for the next turn.
    const onError = (err) => finish(err && err.type !== "TransportError" && err.message !== "timeout"
      ? authError(err.message)
      : new ApiError(NETWORK_ERROR, "Could not reach the server. Check that Rill is running, then retry."));
    const timer = setTimeout(onError, CONNECT_TIMEOUT_MS);
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
  });
}

// One turn as this client follows it; nothing reaches the handlers once it is stopped or ended.
class SocketTurn {
  constructor(id, lastSeq, handlers) {
    this.id = id;
    this.lastSeq = lastSeq;
    this.handlers = handlers;
    this.stopped = false;
    this.ended = false;
    this.sent = false;       // the server has it: resume it after a reconnect
    this.cancelAsked = false;
    this.ends = new Promise((resolve) => { this.resolveEnded = resolve; });
  }

  event(name, event) {
    if (this.ended || this.stopped || !Number.isInteger(event.seq) || event.seq <= this.lastSeq) return;
    this.lastSeq = event.seq;
    const kind = KIND_OF[name];
    if (kind === "start") this.handlers.start(event);
    else if (kind === "token") this.handlers.token(event.token, event.seq);
    else if (kind === "reasoning") this.handlers.reasoning(event.reasoning, event.seq);
    else if (TOOL_CALL_KINDS[kind]) this.handlers.toolCall(TOOL_CALL_KINDS[kind], event, event.seq);
    else if (kind === "done") this.end(() => this.handlers.done(event));
    else if (kind === "error") this.end(() => this.handlers.error(new ApiError(event.error.type, event.error.message)));
  }

  end(report = () => {}) {
    if (this.ended) return;
    this.ended = true;
    this.resolveEnded();
    if (!this.stopped) report();
  }
}

export class SocketTransport {
  constructor() {
    this.socket = null;
    this.turns = new Map();  // turn id -> SocketTurn, while followed
    this.lostTimer = 0;
  }

  connection() {
    if (this.socket) return this.socket;
    const socket = io({ autoConnect: false, auth: (send) => send({ token: getAccessToken() }) });
    for (const name of Object.values(EVENTS)) {
      socket.on(name, (event) => event.turn_id && this.turns.get(event.turn_id)?.event(name, event));
    }
    socket.on("disconnect", () => {
      for (const turn of this.turns.values()) turn.handlers.reconnecting?.(true);
      clearTimeout(this.lostTimer);
      this.lostTimer = setTimeout(() => this.giveUp(), RECONNECT_GIVE_UP_MS);
    });
    socket.on("connect", () => {
      clearTimeout(this.lostTimer);
      for (const turn of this.turns.values()) {
        if (!turn.sent) continue;
        turn.handlers.reconnecting?.(false);
        this.resume(socket, turn);
      }
    });
    socket.connect();
    this.socket = socket;
    return socket;
  }

  giveUp() {
    for (const turn of [...this.turns.values()]) {
      turn.end(() => turn.handlers.error(new ApiError("connection_lost", "The connection was lost and the reply could not be followed again.")));
      this.turns.delete(turn.id);
    }
  }

  stream(request, handlers) {
    return this.run(new SocketTurn(request.turn_id, -1, handlers), (socket) => this.ask(socket, "chat_stream", request));
  }

  follow(turnId, lastSeq, handlers) {
    return this.run(new SocketTurn(turnId, lastSeq, handlers), (socket) => this.resume(socket, this.turns.get(turnId)));
  }

  run(turn, send) {
    this.turns.set(turn.id, turn);
    const finished = (async () => {
      const socket = this.connection();
      if (!socket.active) socket.connect(); // a refused connection stays closed until asked again
      try {
        await connected(socket);
      } catch (err) {
        turn.end(() => turn.handlers.error(err));
      }
      if (!turn.ended) {
        const ack = await send(socket);
        turn.sent = true;
        if (ack?.error) turn.end(() => turn.handlers.error(new ApiError(ack.error.type, ack.error.message)));
        else if (turn.cancelAsked) socket.emit("chat_cancel", { turn_id: turn.id }); // Stop came before the ack
        await turn.ends;
      }
      this.turns.delete(turn.id);
    })();
    return { finished, cancel: () => this.cancel(turn), detach: () => this.detach(turn),
      approve: (callId, approved) => this.approve(turn, callId, approved) };
  }

  async ask(socket, event, payload) {
    try {
      return await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
    } catch {
      return { error: { type: "connection_lost", message: "The server did not answer the request." } };
    }
  }

  async resume(socket, turn) {
    if (!turn || turn.ended) return null;
    const ack = await this.ask(socket, "chat_resume", { turn_id: turn.id, after_seq: turn.lastSeq });
    if (ack?.error?.type === "turn_not_found") {
      turn.end(() => turn.handlers.error(new ApiError("connection_lost", "The server no longer has this reply (it restarted, or the reply expired).")));
      return null;
    }
    return ack;
  }

  cancel(turn) {
    if (turn.ended) return;
    if (turn.sent) this.socket?.emit("chat_cancel", { turn_id: turn.id });
    else turn.cancelAsked = true; // before the ack: run() cancels once it comes
  }

  // A tool call waiting for the user: run it (approved) or not; an ApiError when refused.
  async approve(turn, callId, approved) {
    const ack = await this.ask(this.connection(), "chat_approve", { turn_id: turn.id, tool_call_id: callId, approved });
    if (ack?.error) throw new ApiError(ack.error.type, ack.error.message);
  }

  detach(turn) {
    turn.stopped = true;
    turn.end();
  }

  // A new token: the next turn opens a new connection with it.
  reconnect() {
    this.socket?.disconnect();
    this.socket = null;
  }
}
