// Replies: asking, streaming into the view once per animation frame, stopping, and asking again.
// A reply lives on the server as a turn with an event log: this page follows it, and follows it
// again after a reload or a dropped network (from the last event it has, saved with the text),
// and so does any other tab that has the chat open. Only the tab that asked (or took the reply
// over after a reload) writes the partial reply to IndexedDB while it streams; every tab that
// sees the end writes the same final text.
import { ApiError, restoreSession } from "./http.js";
import { StreamingMarkdown } from "./markdown.js";
import { requestOptions } from "./settings.js";
import { SocketTransport } from "./socket.js";
import { chatOnce, followTurn, newTurnId, streamChat } from "./stream.js";

const SAVE_EVERY_MS = 1500;   // a partial reply survives a closed tab, give or take this much
const RATE_EVERY_MS = 250;    // a live tokens/s figure that changes faster is unreadable
const STOP_WAIT_MS = 5000;    // Stop waits this long for the server's last word, then ends here

function serverStats(done) {
  return {
    tokens: done.tokens ?? null,
    tokensCounted: done.usage?.counted_by === "rill", // the upstream reported no usage: Rill counted
    ttftMs: done.ttft_ms ?? null,
    tokensPerSecond: done.tokens_per_second ?? null,
    durationMs: done.duration_ms ?? null,
    finishReason: done.finish_reason ?? null,
  };
}

// One reply on its way: its pieces (thinking, answer, tool calls) are collected as they come
// and drawn at most once per frame.
class Reply {
  constructor(thread, message, view, save, owner = true) {
    this.thread = thread;
    this.message = message;
    this.view = view;
    this.save = save;
    this.owner = owner;       // writes the partial reply while it streams
    this.markdown = new StreamingMarkdown();
    this.reasoning = "";      // the thinking so far, plain text
    this.newReasoning = "";   // arrived since the last frame: appended, never redrawn whole
    this.toolCalls = [];      // [{id, name, arguments, done}] by index
    this.changedCalls = new Set();
    this.lastSeq = -1;        // the turn's last event shown
    this.seeded = false;
    this.count = 0;
    this.sentAt = performance.now();
    this.firstAt = 0;
    this.frame = 0;
    this.savedAt = this.sentAt;
    this.rateAt = 0;
    this.handle = null;
  }

  // What an earlier page (or this one, before a reload) already showed and saved; the view
  // drew its thinking and tool calls with the message.
  seed(message) {
    this.markdown.append(message.content || "");
    this.reasoning = message.reasoning || "";
    this.toolCalls = (message.toolCalls || []).map((call) => ({ ...call }));
    this.lastSeq = message.lastSeq ?? -1;
    this.seeded = Boolean(message.content);
    this.flush();
  }

  get empty() {
    return !this.markdown.text && !this.reasoning && !this.toolCalls.length;
  }

  // false for an event this reply already has (a resumed stream starts where the save was).
  fresh(seq) {
    if (seq === null) return true;
    if (seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    return true;
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  token(text, seq = null) {
    if (!this.fresh(seq)) return;
    if (!this.count) this.firstAt = performance.now();
    this.count += 1;
    this.markdown.append(text);
    this.schedule();
  }

  thought(text, seq = null) {
    if (!this.fresh(seq)) return;
    this.reasoning += text;
    this.newReasoning += text;
    this.schedule();
  }

  // kind: start {index, id, name} | delta {index, arguments} (a JSON fragment) | end {index}.
  toolCall(kind, data, seq = null) {
    if (!this.fresh(seq)) return;
    const index = data.index;
    if (kind === "start") this.toolCalls[index] = { id: data.id ?? null, name: data.name || "tool", arguments: "", done: false };
    const call = this.toolCalls[index];
    if (!call) return; // a fragment of a call never started: nothing to show it in
    if (kind === "delta") call.arguments += data.arguments || "";
    if (kind === "end") call.done = true;
    this.changedCalls.add(index);
    this.schedule();
  }

  flush() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (this.newReasoning) {
      this.view.addReasoning(this.newReasoning);
      this.newReasoning = "";
    }
    for (const index of this.changedCalls) this.view.showToolCall(index, this.toolCalls[index]);
    this.changedCalls.clear();
    if (!this.count && this.empty) return;
    const started = performance.now();
    if (this.count || this.seeded) {
      const { settled, live } = this.markdown.render();
      this.view.update(settled, live);
      performance.measure("rill:render", { start: started }); // read by bench/ui_bench.py and DevTools
    }
    if (started - this.rateAt >= RATE_EVERY_MS) {
      this.rateAt = started;
      this.view.showRate(this.rate(started));
    }
    if (this.owner && started - this.savedAt >= SAVE_EVERY_MS) {
      this.savedAt = started;
      this.keep();
    }
  }

  // Everything shown and the seq it goes up to, in the message together: a reload follows on
  // from exactly there.
  snapshot() {
    this.message.content = this.markdown.text;
    this.message.reasoning = this.reasoning;
    this.message.toolCalls = this.toolCalls.filter(Boolean).map((call) => ({ ...call }));
    this.message.lastSeq = this.lastSeq;
  }

  keep() {
    this.snapshot();
    this.save(this.message);
  }

  rate(now) {
    const seconds = (now - this.firstAt) / 1000;
    return this.count > 1 && seconds > 0 ? (this.count - 1) / seconds : null;
  }

  // Measured here when the server's figures never came (the reply was stopped).
  clientStats() {
    const now = performance.now();
    return {
      tokens: this.count,
      ttftMs: this.count ? this.firstAt - this.sentAt : null,
      tokensPerSecond: this.rate(now),
      durationMs: now - this.sentAt,
      finishReason: "cancelled",
    };
  }
}

// The widgets it draws on: messages (MessageList), composer, header, notices.
export class Turns {
  constructor({ threads, widgets, getSettings, onChange }) {
    this.threads = threads;
    this.messages = widgets.messages;
    this.composer = widgets.composer;
    this.header = widgets.header;
    this.notices = widgets.notices;
    this.getSettings = getSettings;
    this.onChange = onChange;   // the thread list changed (a new chat, a new time)
    this.active = null;
    this.socket = null;         // connected on first use
    this.stopTimer = 0;
  }

  get busy() {
    return this.active !== null;
  }

  setBusy(busy) {
    this.composer.setBusy(busy);
    this.messages.setBusy(busy);
  }

  warn(message) {
    this.notices.notice(message, { kind: "warning", sticky: true });
  }

  // {stream(request, handlers), follow(turnId, lastSeq, handlers)}
  transport(settings) {
    if (settings.stream && settings.transport === "socketio") {
      this.socket ??= new SocketTransport();
      return { stream: (r, h) => this.socket.stream(r, h), follow: (id, seq, h) => this.socket.follow(id, seq, h) };
    }
    return { stream: settings.stream ? streamChat : chatOnce, follow: followTurn };
  }

  tokenChanged() {
    this.socket?.reconnect();
  }

  // false: not taken (a reply is still running), so the text stays in the box.
  send(text) {
    if (this.busy) return false;
    const isNew = !this.threads.current;
    this.threads.ensureCurrent(text);
    if (isNew) this.header.setTitle(this.threads.current.title);
    const question = this.threads.addMessage({ role: "user", content: text, status: "complete" });
    this.messages.append(question);
    this.ask(question);
    return true;
  }

  // replaceTurn: the server turn this one asks again; the server forgets it (and what followed)
  // first, so the model does not see the answer being replaced.
  ask(question, replaceTurn = null) {
    const thread = this.threads.current;
    const settings = this.getSettings();
    const message = this.threads.addMessage({
      role: "assistant", content: "", reasoning: "", toolCalls: [], status: "streaming", model: settings.model || null, stats: null,
      turnId: newTurnId(), lastSeq: -1,
    });
    const reply = this.begin(thread, message, this.messages.beginReply(message), true);
    this.request(reply, question.content, settings, thread.sessionId, replaceTurn);
  }

  begin(thread, message, replyView, owner) {
    const reply = new Reply(thread, message, replyView, (m) => this.threads.saveMessage(m), owner);
    this.active = reply;
    this.setBusy(true);
    this.messages.showActions({});
    this.notices.announce("Rill is replying.");
    this.onChange();
    return reply;
  }

  handlers(reply, onError) {
    return {
      start: (event) => this.started(reply, event),
      token: (piece, seq) => this.active === reply && reply.token(piece, seq),
      reasoning: (piece, seq) => this.active === reply && reply.thought(piece, seq),
      toolCall: (kind, data, seq) => this.active === reply && reply.toolCall(kind, data, seq),
      done: (done) => this.finish(reply, done.finish_reason === "cancelled" ? "stopped" : "complete", serverStats(done)),
      error: (error) => onError(error),
      reconnecting: (away) => this.active === reply && this.notices.notice(away ? "Connection lost: reconnecting…"
        : "Reconnected: the reply goes on.", { kind: away ? "warning" : "info" }),
    };
  }

  request(reply, text, settings, sessionId, replaceTurn = null) {
    const request = { message: text, turn_id: reply.message.turnId, ...requestOptions(settings) };
    if (sessionId) request.session_id = sessionId;
    if (sessionId && replaceTurn) request.replace_turn = replaceTurn;
    reply.handle = this.transport(settings).stream(request, this.handlers(reply, (error) => {
      if (error.type === "session_not_found" && sessionId && !reply.count) this.restore(reply, text, settings);
      else this.failed(reply, error);
    }));
  }

  // The server no longer has this chat (it expired, or an older server): give it this
  // browser's copy of the conversation so far, then ask again in the restored session.
  async restore(reply, text, settings) {
    const history = this.threads.messages
      .filter((m) => m !== reply.message && m.content && (m.role === "user" || m.status !== "error"))
      .slice(0, -1) // the question being asked goes with the request itself
      .map((m) => ({ role: m.role, content: m.content }));
    try {
      const session = await restoreSession(history);
      reply.thread.sessionId = session.id;
      this.threads.saveThread(reply.thread, { touch: false });
      this.warn("The server no longer had this chat, so it was restored from this browser's copy.");
      this.request(reply, text, settings, session.id);
    } catch (err) {
      this.failed(reply, err instanceof ApiError ? err : new ApiError("restore_failed", err.message));
    }
  }

  // A reply still streaming when this page opened the chat (a reload, another tab asking):
  // follow it on the server from the last event this browser has.
  followStreaming({ owner }) {
    const message = this.threads.messages.at(-1);
    if (this.busy || !message || message.role !== "assistant" || message.status !== "streaming" || !message.turnId) return;
    const reply = this.begin(this.threads.current, message, this.messages.resumeReply(message), owner);
    reply.seed(message);
    reply.handle = this.transport(this.getSettings()).follow(message.turnId, reply.lastSeq,
      this.handlers(reply, (error) => this.failed(reply, error)));
  }

  failed(reply, error) {
    // A reply that cannot be followed any more keeps what arrived.
    if (error.type === "connection_lost" && !reply.empty) {
      this.warn(error.message);
      this.finish(reply, "stopped", null);
    } else {
      this.finish(reply, "error", null, error);
    }
  }

  started(reply, event) {
    if (this.active !== reply) return;
    if (event.model) reply.message.model = event.model;
    if (event.session_id && reply.thread.sessionId !== event.session_id) {
      reply.thread.sessionId = event.session_id;
      this.threads.saveThread(reply.thread);
    }
  }

  // Stop (or Esc), in any tab: the server stops the turn and its last event ends the reply
  // here; if that does not come soon, it ends here anyway.
  stop() {
    const reply = this.active;
    if (!reply) return;
    reply.handle?.cancel();
    clearTimeout(this.stopTimer);
    this.stopTimer = setTimeout(() => {
      if (this.active !== reply) return;
      reply.handle?.detach();
      this.finish(reply, "stopped", null);
    }, STOP_WAIT_MS);
  }

  // Leave the reply to the server (another chat was opened): it goes on there and is followed
  // again when this chat is opened.
  detach() {
    const reply = this.active;
    if (!reply) return;
    reply.handle?.detach();
    reply.flush();
    if (reply.owner) reply.keep();
    this.active = null;
    this.setBusy(false);
  }

  // The chat is being deleted: stop the reply on the server and forget it here.
  abandon() {
    const reply = this.active;
    if (!reply) return;
    reply.handle?.cancel();
    reply.handle?.detach();
    this.active = null;
    this.setBusy(false);
  }

  finish(reply, status, stats, error = null) {
    if (this.active !== reply) return;
    clearTimeout(this.stopTimer);
    reply.flush();
    this.active = null;
    const message = reply.message;
    reply.snapshot();
    message.status = status;
    if (status === "error") Object.assign(message, { content: "", reasoning: "", toolCalls: [] });
    message.stats = status === "error" ? null : stats || reply.clientStats();
    message.error = error && { type: error.type, message: error.message };
    reply.view.finish(message);
    this.threads.saveMessage(message);
    this.threads.saveThread(reply.thread);
    this.setBusy(false);
    this.showActions();
    this.onChange();
    this.notices.announce({
      complete: "Reply finished.",
      stopped: "Reply stopped.",
      error: `The reply failed: ${error?.message}`,
    }[status]);
  }

  // [last question, its reply or null], or [] when the chat is empty.
  lastExchange() {
    const messages = this.threads.messages;
    const last = messages.at(-1);
    if (!last) return [];
    if (last.role === "user") return [last, null];
    const question = messages.at(-2);
    return question?.role === "user" ? [question, last] : [];
  }

  regenerate() {
    const [question, reply] = this.lastExchange();
    if (this.busy || !question) return;
    if (reply) {
      this.threads.removeMessages([reply]);
      this.messages.remove(reply.id);
    }
    this.ask(question, reply?.turnId);
  }

  editLast(text) {
    const [question, reply] = this.lastExchange();
    if (this.busy || !question) return false;
    const old = [question, reply].filter(Boolean);
    this.threads.removeMessages(old);
    old.forEach((m) => this.messages.remove(m.id));
    const edited = this.threads.addMessage({ role: "user", content: text, status: "complete" });
    this.messages.append(edited);
    this.ask(edited, reply?.turnId);
    return true;
  }

  showActions() {
    const [question, reply] = this.lastExchange();
    this.messages.showActions({
      editId: question?.id ?? null,
      regenerateId: reply && reply.status !== "error" ? reply.id : null,
    });
  }
}
