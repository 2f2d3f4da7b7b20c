// The chats: the list, the open one and its messages, kept in memory and written through to
// the store (IndexedDB, or a MemoryStore where the browser gives none). A failed write is
// reported through onError and the chat goes on in memory. Every write to a shared store is
// announced to the other tabs on a BroadcastChannel; they read the chat again.
import { newId } from "./store.js";

const TITLE_CHARS = 60;

export function titleFrom(text) {
  const line = text.trim().split("\n")[0].trim();
  return line.length > TITLE_CHARS ? `${line.slice(0, TITLE_CHARS - 1).trimEnd()}…` : line || "New chat";
}

const now = () => new Date().toISOString();

const CHANNEL = "rill-threads";

export class Threads {
  constructor(store, onError) {
    this.store = store;
    this.onError = onError;
    this.onRemoteChange = () => {};  // (threadId): another tab wrote to that chat
    this.channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(CHANNEL) : null;
    if (this.channel) this.channel.onmessage = (event) => this.onRemoteChange(event.data.threadId);
    this.list = [];                // newest first
    this.current = null;           // null: a new chat not yet started
    this.messages = [];            // the current chat's, in order
    this.loaded = new Map();       // thread id -> its messages, once read
  }

  async load() {
    this.list = await this.store.threads();
  }

  write(operation, threadId = this.current?.id) {
    return operation(this.store)
      .then(() => this.store.shared && this.channel?.postMessage({ threadId }))
      .catch((err) => this.onError(err.message));
  }

  // Another tab changed chat `id`: read the list, and that chat if it was read before, again.
  async refresh(id) {
    this.list = await this.store.threads();
    if (this.loaded.has(id)) this.loaded.set(id, await this.store.messages(id));
    if (this.current?.id === id) {
      this.current = this.list.find((t) => t.id === id) || null;
      this.messages = this.current ? this.loaded.get(id) : [];
    }
  }

  async messagesOf(id) {
    if (!this.loaded.has(id)) this.loaded.set(id, await this.store.messages(id));
    return this.loaded.get(id);
  }

  async select(id) {
    const thread = this.list.find((t) => t.id === id);
    if (!thread) return;
    this.messages = await this.messagesOf(id);
    this.current = thread;
  }

  startNew() {
    this.current = null;
    this.messages = [];
  }

  // The open chat, created (titled after its first message) if there is none yet.
  ensureCurrent(firstText) {
    if (this.current) return this.current;
    const thread = { id: newId(), title: titleFrom(firstText), createdAt: now(), updatedAt: now(), sessionId: null };
    this.list.unshift(thread);
    this.loaded.set(thread.id, []);
    this.current = thread;
    this.messages = this.loaded.get(thread.id);
    this.write((s) => s.putThread(thread), thread.id);
    return thread;
  }

  // `touch`: the chat had activity, so it moves to the top of the list.
  saveThread(thread = this.current, { touch = true } = {}) {
    if (touch) {
      thread.updatedAt = now();
      this.list.sort((a, b) => b.updatedAt.localeCompare(a.updatedAt));
    }
    return this.write((s) => s.putThread(thread), thread.id);
  }

  addMessage(fields) {
    const thread = this.current;
    const last = this.messages.at(-1);
    const message = { id: newId(), threadId: thread.id, seq: last ? last.seq + 1 : 0, createdAt: now(), ...fields };
    this.messages.push(message);
    this.saveMessage(message);
    this.saveThread(thread);
    return message;
  }

  saveMessage(message) {
    return this.write((s) => s.putMessage({ ...message }), message.threadId);
  }

  removeMessages(messages) {
    const ids = new Set(messages.map((m) => m.id));
    const kept = this.messages.filter((m) => !ids.has(m.id));
    this.messages.splice(0, this.messages.length, ...kept);
    return this.write((s) => s.deleteMessages([...ids]));
  }

  rename(id, title) {
    const thread = this.list.find((t) => t.id === id);
    if (!thread) return;
    thread.title = title.slice(0, 200);
    return this.saveThread(thread, { touch: false });
  }

  remove(id) {
    this.list = this.list.filter((t) => t.id !== id);
    this.loaded.delete(id);
    if (this.current?.id === id) this.startNew();
    return this.write((s) => s.deleteThread(id), id);
  }

  // The threads whose title or text contains `query`; all of them for an empty query.
  async search(query) {
    if (!query) return this.list;
    const hits = await this.store.search(query);
    return this.list.filter((t) => hits.has(t.id));
  }

  exportThreads(ids = null) {
    return this.store.exportThreads(ids);
  }

  // Returns how many threads came in; throws an Error that says what is wrong with the file.
  async importThreads(data) {
    const count = await this.store.importThreads(data);
    this.list = await this.store.threads();
    return count;
  }
}
