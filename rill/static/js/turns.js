// Replies: asking, streaming into the view once per animation frame, stopping, and asking again
// (a regenerate, or an edited question) as a new branch. A reply lives on the server as a turn
// with an event log, written into the thread when it ends: this page follows it, and any page
// that opens the thread while it runs (a reload, another device) follows it too, from the start
// of its log. When it ends, the thread is read again from the server.
import { ApiError } from "./http.js";
import { StreamingMarkdown } from "./markdown.js";
import { requestOptions } from "./settings.js";
import { SocketTransport } from "./socket.js";
import { chatOnce, followTurn, newTurnId, streamChat } from "./stream.js";

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
  constructor(message, view) {
    this.message = message;   // {role, content, status, model, turnId, ...}: what the view draws
    this.view = view;
    this.threadId = null;     // known from the start event
    this.replyId = null;      // the id the reply will have in the thread (start event)
    this.request = null;      // what was asked (to ask again when it was refused)
    this.markdown = new StreamingMarkdown();
    this.reasoning = "";      // the thinking so far, plain text
    this.newReasoning = "";   // arrived since the last frame: appended, never redrawn whole
    this.toolCalls = [];      // [{id, name, arguments, done}] by index
    this.changedCalls = new Set();
    this.count = 0;
    this.sentAt = performance.now();
    this.firstAt = 0;
    this.frame = 0;
    this.rateAt = 0;
    this.handle = null;
  }

  get empty() {
    return !this.markdown.text && !this.reasoning && !this.toolCalls.length;
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  token(text) {
    if (!this.count) this.firstAt = performance.now();
    this.count += 1;
    this.markdown.append(text);
    this.schedule();
  }

  thought(text) {
    this.reasoning += text;
    this.newReasoning += text;
    this.schedule();
  }

  // kind: start {index, id, name} | delta {index, arguments} (a JSON fragment) | end {index} |
  // asked {index} (it waits for the user's approval) | answered {index, approved} |
  // result {index, content, is_error} (a tool Rill ran).
  toolCall(kind, data) {
    const index = data.index;
    if (kind === "start") this.toolCalls[index] = { id: data.id ?? null, name: data.name || "tool", arguments: "", done: false };
    const call = this.toolCalls[index];
    if (!call) return; // a fragment of a call never started: nothing to show it in
    if (kind === "delta") call.arguments += data.arguments || "";
    if (kind === "end") call.done = true;
    if (kind === "asked") call.asking = true;
    if (kind === "answered") Object.assign(call, { asking: false, approved: Boolean(data.approved) });
    if (kind === "result") Object.assign(call, { result: data.content, isError: Boolean(data.is_error) });
    this.redrawCall(index);
  }

  redrawCall(index) {
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
    if (!this.count) return;
    const started = performance.now();
    const { settled, live } = this.markdown.render();
    this.view.update(settled, live);
    performance.measure("rill:render", { start: started }); // read by bench/ui_bench.py and DevTools
    if (started - this.rateAt >= RATE_EVERY_MS) {
      this.rateAt = started;
      this.view.showRate(this.rate(started));
    }
  }

  // Everything shown, in the message the view draws when the reply ends.
  snapshot() {
    this.message.content = this.markdown.text;
    this.message.reasoning = this.reasoning;
    this.message.toolCalls = this.toolCalls.filter(Boolean).map((call) => ({ ...call }));
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

// The widgets it draws on: messages (MessageList), composer, notices. `onEnd(threadId)`: a reply
// ended in that thread (read it again); `onStart(threadId)`: a new chat got its thread.
export class Turns {
  constructor({ threads, widgets, getSettings, onStart, onEnd }) {
    this.threads = threads;
    this.messages = widgets.messages;
    this.composer = widgets.composer;
    this.notices = widgets.notices;
    this.getSettings = getSettings;
    this.onStart = onStart;
    this.onEnd = onEnd;
    this.active = null;
    this.settling = false;      // a reply ended: the composer waits for the thread to be read again
    this.refused = null;        // the last reply, when the server refused it (nothing was saved)
    this.socket = null;         // connected on first use
    this.stopTimer = 0;
    this.errors = new Map();    // reply id -> the error it failed with (the server keeps only the status)
    this.ended = new Set();     // the turns that ended on this page: never followed again
  }

  // A reply runs, or has just ended and the thread is being read again.
  get busy() {
    return this.active !== null || this.settling;
  }

  setBusy(busy) {
    this.composer.setBusy(busy);
    this.messages.setBusy(busy);
  }

  // {stream(request, handlers), follow(turnId, lastSeq, handlers)}
  transport(settings) {
    if (settings.stream && settings.transport === "socketio") {
      return { stream: (r, h) => this.socketTransport().stream(r, h), follow: (id, seq, h) => this.socketTransport().follow(id, seq, h) };
    }
    return { stream: settings.stream ? streamChat : chatOnce, follow: followTurn };
  }

  socketTransport() {
    this.socket ??= new SocketTransport();
    return this.socket;
  }

  tokenChanged() {
    this.socket?.reconnect();
  }

  // A new question under the last message shown. false: not taken (a reply is still running),
  // so the text stays in the box.
  // `files`: uploaded ones ({id, name, type}) that go with it.
  send(text, files = []) {
    if (this.busy) return false;
    const last = this.threads.page.messages.at(-1);
    const fields = files.length ? { message: text, files: files.map((f) => f.id) } : { message: text };
    this.shownFiles = files;
    this.ask(fields, last ? last.id : undefined, this.threads.messages.length);
    return true;
  }

  // Another reply to question `questionId`, beside the ones it has.
  regenerate(questionId) {
    if (this.busy) return;
    const at = this.threads.messages.findIndex((m) => m.id === questionId);
    if (at !== -1) this.ask({}, questionId, at + 1);
  }

  // An edited question asked as a new branch beside it.
  rerun(messageId, text) {
    if (this.busy) return false;
    const at = this.threads.messages.findIndex((m) => m.id === messageId);
    if (at === -1) return false;
    const { files, parentId } = this.threads.messages[at]; // the edited question keeps its files
    this.shownFiles = files;
    this.ask(files.length ? { message: text, files: files.map((f) => f.id) } : { message: text }, parentId, at);
    return true;
  }

  // Retry a reply that failed: one the server refused is asked again as it was; one that failed
  // on the way is regenerated.
  retry(id) {
    if (this.busy) return;
    const refused = this.refused;
    if (refused?.message.id === id) {
      this.messages.remove(id);
      this.messages.remove(`asking-${refused.request.turn_id}`);
      this.start({ ...refused.request, turn_id: newTurnId() });
      return;
    }
    const reply = this.threads.messages.find((m) => m.id === id);
    if (reply?.parentId) this.regenerate(reply.parentId);
  }

  // Asks on the server, under `parentId` (undefined: the thread's current leaf; null: a new root),
  // showing the path's first `keep` messages and then the new question (if any) and the reply.
  ask(fields, parentId, keep) {
    const request = { ...fields, turn_id: newTurnId(), ...requestOptions(this.getSettings()) };
    if (this.threads.current) request.thread_id = this.threads.current.id;
    else if (this.threads.draftTools.length) request.mcp_servers = this.threads.draftTools; // then the thread's
    if (this.threads.current && parentId !== undefined) request.parent_id = parentId;
    this.messages.keepFirst(keep);
    this.start(request);
  }

  start(request) {
    if (request.message !== undefined) {
      const files = (request.files || []).map((id) => this.shownFiles?.find((f) => f.id === id) || { id, name: "file" });
      this.messages.append({ id: `asking-${request.turn_id}`, role: "user", content: request.message, status: "complete", files });
    }
    const message = { id: `reply-${request.turn_id}`, role: "assistant", content: "", status: "streaming", model: request.model || null, turnId: request.turn_id };
    const reply = this.begin(message, this.messages.beginReply(message));
    reply.request = request;
    reply.threadId = request.thread_id ?? null;
    reply.handle = this.transport(this.getSettings()).stream(request, this.handlers(reply));
  }

  // A reply being written that this page did not ask for (a reload, another device): followed
  // from the start of its log, below the last message shown.
  follow(running) {
    const last = this.threads.page.messages.at(-1);
    const turn = running.find((t) => t.question_id === last?.id && !this.ended.has(t.turn_id));
    if (this.busy || !turn) return;
    const message = { id: `reply-${turn.turn_id}`, role: "assistant", content: "", status: "streaming", model: null, turnId: turn.turn_id };
    const reply = this.begin(message, this.messages.beginReply(message));
    reply.threadId = this.threads.current.id;
    reply.replyId = turn.reply_id;
    reply.handle = this.transport(this.getSettings()).follow(turn.turn_id, -1, this.handlers(reply));
  }

  begin(message, replyView) {
    const reply = new Reply(message, replyView);
    this.active = reply;
    this.refused = null;
    this.setBusy(true);
    this.notices.announce("Rill is replying.");
    return reply;
  }

  handlers(reply) {
    const mine = (call) => (...args) => this.active === reply && call(...args);
    return {
      start: mine((event) => this.started(reply, event)),
      token: mine((piece) => reply.token(piece)),
      reasoning: mine((piece) => reply.thought(piece)),
      toolCall: mine((kind, data) => reply.toolCall(kind, data)),
      done: (done) => this.finish(reply, done.finish_reason === "cancelled" ? "stopped" : "complete", serverStats(done)),
      error: (error) => this.failed(reply, error),
      reconnecting: mine((away) => this.notices.notice(away ? "Connection lost: reconnecting…"
        : "Reconnected: the reply goes on.", { kind: away ? "warning" : "info" })),
    };
  }

  started(reply, event) {
    if (event.model) reply.message.model = event.model;
    reply.replyId = event.reply_id ?? reply.replyId;
    const threadId = event.thread_id ?? event.session_id;
    if (threadId && !reply.threadId) {
      reply.threadId = threadId;
      this.onStart(threadId);
    }
  }

  failed(reply, error) {
    // A reply that cannot be followed any more keeps what arrived.
    if (error.type === "connection_lost" && !reply.empty) {
      this.notices.notice(error.message, { kind: "warning", sticky: true });
      this.finish(reply, "stopped", null);
    } else {
      this.finish(reply, "error", null, error);
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

  // The user's answer to a tool call of the running reply that waits for approval.
  async approve(index, approved) {
    const reply = this.active;
    const call = reply?.toolCalls[index];
    if (!call?.asking || call.answering) return;
    call.answering = true; // the buttons wait for the server's answer
    reply.redrawCall(index);
    try {
      await reply.handle.approve(call.id, approved);
    } catch (err) {
      this.notices.error(`The tool call could not be ${approved ? "approved" : "declined"}: ${err.message}`);
      call.answering = false;
      reply.redrawCall(index);
    }
  }

  // Leave the reply to the server (another chat was opened, or the chat changed under it): it
  // goes on there and is followed again when this chat is shown.
  detach() {
    const reply = this.active;
    if (!reply) return;
    reply.handle?.detach();
    this.active = null;
    this.setBusy(false);
  }

  // The chat is being deleted: stop the reply on the server and forget it here.
  abandon() {
    this.active?.handle?.cancel();
    this.detach();
  }

  finish(reply, status, stats, error = null) {
    if (this.active !== reply) return;
    clearTimeout(this.stopTimer);
    reply.flush();
    this.active = null;
    this.ended.add(reply.message.turnId);
    const message = reply.message;
    reply.snapshot();
    message.status = status;
    if (status === "error") Object.assign(message, { content: "", reasoning: "", toolCalls: [] });
    message.stats = status === "error" ? null : stats || reply.clientStats();
    message.error = error && { type: error.type, message: error.message };
    reply.view.finish(message);
    this.notices.announce({
      complete: "Reply finished.",
      stopped: "Reply stopped.",
      error: `The reply failed: ${error?.message}`,
    }[status]);
    if (error && reply.replyId) this.errors.set(reply.replyId, message.error);
    if (reply.threadId && (reply.replyId || !error)) {
      this.settling = true;
      Promise.resolve(this.onEnd(reply.threadId)).finally(() => {
        this.settling = false;
        if (!this.active) this.setBusy(false);
      });
    } else {
      this.refused = reply; // refused before it began: nothing is on the server; Retry asks again
      this.setBusy(false);
    }
  }
}
