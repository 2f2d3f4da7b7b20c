// Replies: asking, streaming into the view once per animation frame, stopping, and asking again.
import { chatOnce, streamChat } from "./api.js";
import { StreamingMarkdown } from "./markdown.js";
import { requestOptions } from "./settings.js";
import { SocketTransport } from "./socket.js";

const SAVE_EVERY_MS = 1500;   // a partial reply survives a closed tab, give or take this much
const RATE_EVERY_MS = 250;    // a live tokens/s figure that changes faster is unreadable

function serverStats(done) {
  return {
    tokens: done.tokens ?? null,
    ttftMs: done.ttft_ms ?? null,
    tokensPerSecond: done.tokens_per_second ?? null,
    durationMs: done.duration_ms ?? null,
    finishReason: done.finish_reason ?? null,
  };
}

// One reply on its way: tokens are collected as they come and drawn at most once per frame.
class Reply {
  constructor(thread, message, view, save) {
    this.thread = thread;
    this.message = message;
    this.view = view;
    this.save = save;
    this.markdown = new StreamingMarkdown();
    this.count = 0;
    this.sentAt = performance.now();
    this.firstAt = 0;
    this.frame = 0;
    this.savedAt = this.sentAt;
    this.rateAt = 0;
    this.handle = null;
  }

  token(text) {
    if (!this.count) this.firstAt = performance.now();
    this.count += 1;
    this.markdown.append(text);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (!this.count) return;
    const started = performance.now();
    const { settled, live } = this.markdown.render();
    this.view.update(settled, live);
    performance.measure("rill:render", { start: started }); // read by bench/ui_bench.py and DevTools
    if (started - this.rateAt >= RATE_EVERY_MS) {
      this.rateAt = started;
      this.view.showRate(this.rate(started));
    }
    if (started - this.savedAt >= SAVE_EVERY_MS) {
      this.savedAt = started;
      this.message.content = this.markdown.text;
      this.save(this.message);
    }
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

export class Turns {
  constructor({ threads, view, getSettings, onChange, onNotice }) {
    this.threads = threads;
    this.view = view;
    this.getSettings = getSettings;
    this.onChange = onChange;   // the thread list changed (a new chat, a new time)
    this.onNotice = onNotice;
    this.active = null;
    this.socket = null;         // connected on first use
  }

  get busy() {
    return this.active !== null;
  }

  transport(settings) {
    if (!settings.stream) return chatOnce;
    if (settings.transport === "socketio") {
      this.socket ??= new SocketTransport();
      return (request, handlers) => this.socket.stream(request, handlers);
    }
    return streamChat;
  }

  tokenChanged() {
    this.socket?.reconnect();
  }

  // false: not taken (a reply is still running), so the text stays in the box.
  send(text) {
    if (this.busy) return false;
    const isNew = !this.threads.current;
    this.threads.ensureCurrent(text);
    if (isNew) this.view.setThreadTitle(this.threads.current.title);
    const question = this.threads.addMessage({ role: "user", content: text, status: "complete" });
    this.view.appendMessage(question);
    this.ask(question);
    return true;
  }

  // replaceTurn: the server turn this one asks again; the server forgets it (and what followed)
  // first, so the model does not see the answer being replaced.
  ask(question, replaceTurn = null) {
    const thread = this.threads.current;
    const settings = this.getSettings();
    const message = this.threads.addMessage({
      role: "assistant", content: "", status: "streaming", model: settings.model || null, stats: null, turnId: null,
    });
    const reply = new Reply(thread, message, this.view.beginReply(message), (m) => this.threads.saveMessage(m));
    this.active = reply;
    this.view.setBusy(true);
    this.view.showActions({});
    this.view.announce("Rill is replying.");
    this.onChange();
    this.request(reply, question.content, settings, thread.sessionId, replaceTurn);
  }

  request(reply, text, settings, sessionId, replaceTurn = null) {
    const request = { message: text, ...requestOptions(settings) };
    if (sessionId) request.session_id = sessionId;
    if (sessionId && replaceTurn) request.replace_turn = replaceTurn;
    reply.handle = this.transport(settings)(request, {
      start: (event) => this.started(reply, event),
      token: (piece) => this.active === reply && reply.token(piece),
      done: (done) => this.finish(reply, done.finish_reason === "cancelled" ? "stopped" : "complete", serverStats(done)),
      error: (error) => {
        if (error.type === "session_not_found" && sessionId && !reply.count) {
          // The server forgot the chat (a restart, an expiry): go on in a new session.
          reply.thread.sessionId = null;
          this.onNotice("The server no longer had this chat (it may have restarted), so it goes on in a new session: "
            + "the model does not see the earlier messages.");
          this.request(reply, text, settings, null);
        } else {
          this.finish(reply, "error", null, error);
        }
      },
    });
  }

  started(reply, event) {
    if (this.active !== reply) return;
    reply.message.turnId = event.turn_id || null;
    if (event.model) reply.message.model = event.model;
    if (event.session_id && reply.thread.sessionId !== event.session_id) {
      reply.thread.sessionId = event.session_id;
      this.threads.saveThread(reply.thread);
    }
  }

  stop() {
    const reply = this.active;
    if (!reply) return;
    reply.handle?.stop();
    this.finish(reply, "stopped", null);
  }

  finish(reply, status, stats, error = null) {
    if (this.active !== reply) return;
    reply.flush();
    this.active = null;
    const message = reply.message;
    message.status = status;
    message.content = status === "error" ? "" : reply.markdown.text;
    message.stats = status === "error" ? null : stats || reply.clientStats();
    message.error = error && { type: error.type, message: error.message };
    reply.view.finish(message);
    this.threads.saveMessage(message);
    this.threads.saveThread(reply.thread);
    this.view.setBusy(false);
    this.showActions();
    this.onChange();
    this.view.announce({
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
      this.view.removeMessage(reply.id);
    }
    this.ask(question, reply?.turnId);
  }

  editLast(text) {
    const [question, reply] = this.lastExchange();
    if (this.busy || !question) return false;
    const old = [question, reply].filter(Boolean);
    this.threads.removeMessages(old);
    old.forEach((m) => this.view.removeMessage(m.id));
    const edited = this.threads.addMessage({ role: "user", content: text, status: "complete" });
    this.view.appendMessage(edited);
    this.ask(edited, reply?.turnId);
    return true;
  }

  showActions() {
    const [question, reply] = this.lastExchange();
    this.view.showActions({
      editId: question?.id ?? null,
      regenerateId: reply && reply.status !== "error" ? reply.id : null,
    });
  }
}
