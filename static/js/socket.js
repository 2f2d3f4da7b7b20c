// Socket.IO transport: the same turns as api.js's streamChat, over one shared connection.
// The server runs one turn per connection, so a turn waits until the previous one has ended
// on the server (a stopped turn ends within one decode step).
import { io } from "../vendor/socket.io.esm.min.js";
import { ApiError, NETWORK_ERROR } from "./api.js";

const CONNECT_TIMEOUT_MS = 5000;
const ACK_TIMEOUT_MS = 15000;

export class SocketTransport {
  constructor() {
    this.socket = null;
    this.turn = null;          // the turn the server is running for us, if any
    this.serverIdle = Promise.resolve();
  }

  connect() {
    if (this.socket) return this.socket;
    const socket = io({ autoConnect: false, reconnectionDelayMax: 5000 });
    socket.on("chat_start", (e) => this.route(e, (turn) => turn.onStart(e)));
    socket.on("chat_token", (e) => this.route(e, (turn) => turn.onToken(e.token)));
    socket.on("chat_complete", (e) => this.route(e, (turn) => turn.onEnd(() => turn.handlers.done(e))));
    socket.on("chat_error", (e) => this.route(e, (turn) => turn.onEnd(() => turn.handlers.error(new ApiError(e.error.type, e.error.message)))));
    socket.on("disconnect", () => this.turn?.onEnd(() => this.turn.handlers.error(
      new ApiError("connection_lost", "The connection was lost before the reply finished."))));
    socket.connect();
    this.socket = socket;
    return socket;
  }

  // Events name their turn; until the ack or chat_start gives us its id, the turn is ours.
  route(event, apply) {
    const turn = this.turn;
    if (!turn) return;
    if (event.turn_id && turn.id && event.turn_id !== turn.id) return;
    apply(turn);
  }

  waitConnected(socket) {
    if (socket.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(), CONNECT_TIMEOUT_MS);
      const done = () => { clearTimeout(timer); socket.off("connect", done); socket.off("connect_error", fail); resolve(); };
      const fail = () => {
        clearTimeout(timer);
        socket.off("connect", done);
        socket.off("connect_error", fail);
        reject(new ApiError(NETWORK_ERROR, "Could not reach the server. Check that Rill is running, then retry."));
      };
      socket.on("connect", done);
      socket.on("connect_error", fail);
    });
  }

  stream(request, handlers) {
    const transport = this;
    let resolveEnded;
    const turn = {
      id: null,
      handlers,
      stopped: false,
      ended: false,
      serverEnded: new Promise((resolve) => { resolveEnded = resolve; }),
      onStart(e) {
        turn.id = e.turn_id;
        if (turn.stopped) return transport.cancel(turn);
        if (!turn.started) {
          turn.started = true;
          handlers.start(e);
        }
      },
      onToken(text) {
        if (!turn.stopped && !turn.ended) handlers.token(text);
      },
      onEnd(report) {
        if (turn.ended) return;
        turn.ended = true;
        if (transport.turn === turn) transport.turn = null;
        resolveEnded();
        if (!turn.stopped) report();
      },
    };

    async function run() {
      await transport.serverIdle;
      if (turn.stopped) return;
      const socket = transport.connect();
      try {
        await transport.waitConnected(socket);
      } catch (err) {
        if (!turn.stopped) handlers.error(err);
        return;
      }
      if (turn.stopped) return;
      transport.turn = turn;
      transport.serverIdle = Promise.race([turn.serverEnded, delay(10000)]);
      let ack;
      try {
        ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("chat_stream", request);
      } catch {
        return turn.onEnd(() => handlers.error(new ApiError("connection_lost", "The server did not answer the request.")));
      }
      if (ack.error) return turn.onEnd(() => handlers.error(new ApiError(ack.error.type, ack.error.message)));
      turn.onStart({ turn_id: ack.turn_id, session_id: ack.session_id, model: request.model || null });
      await turn.serverEnded;
    }

    const finished = run();
    return {
      finished,
      stop() {
        if (turn.stopped) return;
        turn.stopped = true;
        transport.cancel(turn);
      },
    };
  }

  cancel(turn) {
    if (turn.id && !turn.ended) this.socket.emit("chat_cancel", { turn_id: turn.id });
  }
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
