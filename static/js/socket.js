// Socket.IO transport: the same turns as api.js's streamChat, over one shared connection.
// The server runs one turn per connection, so a turn starts once the one before it has ended
// there (a stopped turn ends within one decode step).
import { io } from "../vendor/socket.io.esm.min.js";
import { ApiError, NETWORK_ERROR, authError, getAccessToken } from "./api.js";

const CONNECT_TIMEOUT_MS = 5000;
const ACK_TIMEOUT_MS = 15000;
const ENDED_TIMEOUT_MS = 10000;  // never wait on a turn's end forever
const BUSY_RETRIES = 8;

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const lost = (message) => new ApiError("connection_lost", message);

function connected(socket) {
  if (socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const finish = (ok) => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
      if (ok) resolve();
      else reject(new ApiError(NETWORK_ERROR, "Could not reach the server. Check that Rill is running, then retry."));
    };
    const onConnect = () => finish(true);
    // The server refusing the connection (a missing or bad token) is not a TransportError: no
    // retry helps then. Otherwise the socket goes on reconnecting for the next turn.
    const onError = (err) => (err && err.type !== "TransportError" && err.message !== "timeout"
      ? refuse(err.message) : finish(false));
    const refuse = (message) => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
      reject(authError(message));
    };
    const timer = setTimeout(onError, CONNECT_TIMEOUT_MS);
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
  });
}

// One turn as this client sees it; nothing reaches the handlers once it is stopped or ended.
class SocketTurn {
  constructor(request, handlers) {
    this.request = request;
    this.handlers = handlers;
    this.id = null;
    this.started = false;
    this.stopped = false;
    this.ended = false;
    this.serverEnded = new Promise((resolve) => { this.resolveEnded = resolve; });
  }

  // From the ack or chat_start, whichever comes first.
  start(event) {
    this.id = event.turn_id;
    if (this.started || this.stopped) return;
    this.started = true;
    this.handlers.start(event);
  }

  token(text) {
    if (!this.stopped && !this.ended) this.handlers.token(text);
  }

  end(report = () => {}) {
    if (this.ended) return;
    this.ended = true;
    this.resolveEnded();
    if (!this.stopped) report();
  }

  done(event) {
    this.end(() => this.handlers.done(event));
  }

  fail(error) {
    this.end(() => this.handlers.error(error));
  }
}

export class SocketTransport {
  constructor() {
    this.socket = null;
    this.current = null;                  // the turn the server's events are about
    this.previousEnded = Promise.resolve();
  }

  connection() {
    if (this.socket) return this.socket;
    const socket = io({ autoConnect: false, auth: (send) => send({ token: getAccessToken() }) });
    const toCurrent = (handle) => (event) => {
      const turn = this.current;
      if (turn && (!event.turn_id || !turn.id || event.turn_id === turn.id)) handle(turn, event);
    };
    socket.on("chat_start", toCurrent((turn, event) => {
      turn.start(event);
      if (turn.stopped) this.cancel(turn);
    }));
    socket.on("chat_token", toCurrent((turn, event) => turn.token(event.token)));
    socket.on("chat_complete", toCurrent((turn, event) => turn.done(event)));
    socket.on("chat_error", (event) => {
      // A refused request (turn_id null) has the same error in its ack: handled there.
      if (event.turn_id) toCurrent((turn) => turn.fail(new ApiError(event.error.type, event.error.message)))(event);
    });
    socket.on("disconnect", () => this.current?.fail(lost("The connection was lost before the reply finished.")));
    socket.connect();
    this.socket = socket;
    return socket;
  }

  stream(request, handlers) {
    const turn = new SocketTurn(request, handlers);
    const previousEnded = this.previousEnded;
    this.previousEnded = Promise.race([turn.serverEnded, delay(ENDED_TIMEOUT_MS)]);
    return { finished: this.run(turn, previousEnded), stop: () => this.stop(turn) };
  }

  async run(turn, previousEnded) {
    await previousEnded;
    if (turn.stopped) return turn.end();
    const socket = this.connection();
    if (!socket.active) socket.connect(); // a refused connection stays closed until asked again
    try {
      await connected(socket);
    } catch (err) {
      return turn.fail(err);
    }
    if (turn.stopped) return turn.end();
    this.current = turn;
    const ack = await this.ask(socket, turn.request);
    if (ack.error) return turn.fail(new ApiError(ack.error.type, ack.error.message));
    turn.start({ turn_id: ack.turn_id, session_id: ack.session_id, model: null });
    if (turn.stopped) this.cancel(turn);
    await turn.serverEnded;
  }

  // chat_stream; asked again for a moment if the server is still winding the last turn down.
  async ask(socket, request) {
    for (let attempt = 1; ; attempt++) {
      let ack;
      try {
        ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("chat_stream", request);
      } catch {
        return { error: { type: "connection_lost", message: "The server did not answer the request." } };
      }
      if (ack.error?.type !== "turn_in_progress" || attempt === BUSY_RETRIES) return ack;
      await delay(100 * attempt);
    }
  }

  stop(turn) {
    if (turn.stopped) return;
    turn.stopped = true;
    if (turn.id) this.cancel(turn);
    // Without an id the request is unsent (run() ends it) or unanswered (the ack cancels it).
  }

  cancel(turn) {
    if (!turn.ended) this.socket.emit("chat_cancel", { turn_id: turn.id });
  }

  // A new token: the next turn opens a new connection with it.
  reconnect() {
    this.socket?.disconnect();
    this.socket = null;
  }
}
