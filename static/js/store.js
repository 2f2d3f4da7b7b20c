// Threads and their messages in IndexedDB. Every failure becomes a StoreError whose message
// can be shown as it is: losing history silently is worse than saying it was not kept.
// A reply keeps its thinking (`reasoning`, plain text) and tool calls (`toolCalls`:
// [{id, name, arguments (JSON text), done}]) beside its text, so a reload shows them again.
const DB_NAME = "rill";
const DB_VERSION = 1;
export const EXPORT_FORMAT = "rill.threads";

export class StoreError extends Error {}

function explain(err) {
  if (err?.name === "QuotaExceededError") return "the browser's storage for this site is full";
  if (err?.name === "InvalidStateError" || err?.name === "SecurityError") return "this browser does not allow storage here (private mode?)";
  return err?.message || String(err);
}

// Random ids without crypto.randomUUID, which plain-http pages on a LAN do not have.
export function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export async function openStore() {
  if (!globalThis.indexedDB) throw new StoreError("Chats cannot be saved: this browser has no IndexedDB.");
  try {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore("threads", { keyPath: "id" });
      db.createObjectStore("messages", { keyPath: "id" }).createIndex("threadId", "threadId");
    };
    return new Store(await done(request));
  } catch (err) {
    throw new StoreError(`Chats cannot be saved: ${explain(err)}. They last until you leave this page.`);
  }
}

class Store {
  shared = true;  // every tab of this site sees its writes

  constructor(db) {
    this.db = db;
  }

  // Runs `work(stores)` in one transaction; resolves with its result once the data is written.
  async run(names, mode, work, failure) {
    try {
      const tx = this.db.transaction(names, mode);
      const committed = new Promise((resolve, reject) => {
        tx.oncomplete = resolve;
        tx.onabort = () => reject(tx.error || new Error("the write was aborted"));
      });
      const stores = Object.fromEntries([names].flat().map((name) => [name, tx.objectStore(name)]));
      const [result] = await Promise.all([work(stores), committed]);
      return result;
    } catch (err) {
      throw new StoreError(`${failure}: ${explain(err)}.`);
    }
  }

  async threads() {
    const threads = await this.run("threads", "readonly", (s) => done(s.threads.getAll()), "Chats could not be loaded");
    return threads.sort((a, b) => b.updatedAt.localeCompare(a.updatedAt));
  }

  async messages(threadId) {
    const messages = await this.run("messages", "readonly",
      (s) => done(s.messages.index("threadId").getAll(threadId)), "Messages could not be loaded");
    return messages.sort((a, b) => a.seq - b.seq);
  }

  putThread(thread) {
    return this.run("threads", "readwrite", (s) => done(s.threads.put(thread)), "The chat was not saved");
  }

  putMessage(message) {
    return this.run("messages", "readwrite", (s) => done(s.messages.put(message)), "The message was not saved");
  }

  deleteMessages(ids) {
    return this.run("messages", "readwrite", (s) => Promise.all(ids.map((id) => done(s.messages.delete(id)))),
      "Messages were not deleted");
  }

  deleteThread(id) {
    return this.run(["threads", "messages"], "readwrite", async (s) => {
      const keys = await done(s.messages.index("threadId").getAllKeys(id));
      await Promise.all([done(s.threads.delete(id)), ...keys.map((key) => done(s.messages.delete(key)))]);
    }, "The chat was not deleted");
  }

  // Ids of the threads whose title or any message contains `query` (case-insensitive).
  async search(query) {
    const needle = query.toLowerCase();
    const [threads, messages] = await this.run(["threads", "messages"], "readonly",
      (s) => Promise.all([done(s.threads.getAll()), done(s.messages.getAll())]), "Search failed");
    const hits = new Set(threads.filter((t) => t.title.toLowerCase().includes(needle)).map((t) => t.id));
    for (const m of messages) if (m.content.toLowerCase().includes(needle)) hits.add(m.threadId);
    return hits;
  }

  // The given threads (all when `ids` is null) with their messages, as one JSON-ready object.
  async exportThreads(ids = null) {
    const threads = (await this.threads()).filter((t) => !ids || ids.includes(t.id));
    const withMessages = [];
    for (const thread of threads) withMessages.push({ ...thread, messages: await this.messages(thread.id) });
    return { format: EXPORT_FORMAT, version: 1, exportedAt: new Date().toISOString(), threads: withMessages };
  }

  // Adds the threads of an export; one whose id is taken comes in as a copy. Returns how many.
  async importThreads(data) {
    const threads = parseExport(data);
    const taken = new Set((await this.threads()).map((t) => t.id));
    await this.run(["threads", "messages"], "readwrite", async (s) => {
      const writes = [];
      for (const { messages, ...thread } of threads) {
        if (taken.has(thread.id)) thread.id = newId();
        writes.push(done(s.threads.put(thread)));
        for (const message of messages) writes.push(done(s.messages.put({ ...message, id: newId(), threadId: thread.id })));
      }
      await Promise.all(writes);
    }, "The import was not saved");
    return threads.length;
  }
}

// Where chats go when the browser gives no storage (private mode, no IndexedDB): the same calls,
// kept in this page's memory (as copies, as IndexedDB keeps them) until it is closed.
export class MemoryStore {
  shared = false;

  constructor() {
    this.threadsById = new Map();
    this.messagesById = new Map();
  }

  async threads() {
    return [...this.threadsById.values()].map((t) => structuredClone(t))
      .sort((a, b) => b.updatedAt.localeCompare(a.updatedAt));
  }

  async messages(threadId) {
    return [...this.messagesById.values()].filter((m) => m.threadId === threadId).map((m) => structuredClone(m))
      .sort((a, b) => a.seq - b.seq);
  }

  async putThread(thread) {
    this.threadsById.set(thread.id, structuredClone(thread));
  }

  async putMessage(message) {
    this.messagesById.set(message.id, structuredClone(message));
  }

  async deleteMessages(ids) {
    for (const id of ids) this.messagesById.delete(id);
  }

  async deleteThread(id) {
    this.threadsById.delete(id);
    for (const [key, message] of this.messagesById) if (message.threadId === id) this.messagesById.delete(key);
  }

  async search(query) {
    const needle = query.toLowerCase();
    const hits = new Set([...this.threadsById.values()].filter((t) => t.title.toLowerCase().includes(needle)).map((t) => t.id));
    for (const m of this.messagesById.values()) if (m.content.toLowerCase().includes(needle)) hits.add(m.threadId);
    return hits;
  }

  async exportThreads(ids = null) {
    const threads = (await this.threads()).filter((t) => !ids || ids.includes(t.id));
    const withMessages = await Promise.all(threads.map(async (t) => ({ ...t, messages: await this.messages(t.id) })));
    return { format: EXPORT_FORMAT, version: 1, exportedAt: new Date().toISOString(), threads: withMessages };
  }

  async importThreads(data) {
    const threads = parseExport(data);
    for (const { messages, ...thread } of threads) {
      if (this.threadsById.has(thread.id)) thread.id = newId();
      await this.putThread(thread);
      for (const message of messages) await this.putMessage({ ...message, id: newId(), threadId: thread.id });
    }
    return threads.length;
  }
}

// Checks an export file and keeps only the fields Rill knows, so a hand-edited or foreign
// file cannot put anything odd in the database. Throws a StoreError saying what is wrong.
export function parseExport(data) {
  if (!data || data.format !== EXPORT_FORMAT || !Array.isArray(data.threads)) {
    throw new StoreError(`This is not a Rill export (expected "format": "${EXPORT_FORMAT}" and a list of threads).`);
  }
  const text = (v, fallback = "") => (typeof v === "string" ? v : fallback);
  const now = new Date().toISOString();
  return data.threads.map((t, i) => {
    if (!t || !Array.isArray(t.messages)) throw new StoreError(`Thread ${i + 1} in the file has no list of messages.`);
    const messages = t.messages.map((m, j) => {
      if (!m || !["user", "assistant"].includes(m.role) || typeof m.content !== "string") {
        throw new StoreError(`Message ${j + 1} of thread ${i + 1} needs a role (user or assistant) and text content.`);
      }
      return {
        role: m.role,
        content: m.content,
        seq: Number.isFinite(m.seq) ? m.seq : j,
        createdAt: text(m.createdAt, now),
        status: ["complete", "stopped", "error"].includes(m.status) ? m.status : "complete",
        model: text(m.model) || null,
        reasoning: text(m.reasoning),
        toolCalls: Array.isArray(m.toolCalls) ? m.toolCalls.filter((c) => c && typeof c === "object").map(pickToolCall) : [],
        stats: m.stats && typeof m.stats === "object" ? pickStats(m.stats) : null,
        error: m.error && typeof m.error.message === "string" ? { type: text(m.error.type, "error"), message: m.error.message } : null,
      };
    });
    return {
      id: text(t.id) || newId(),
      title: text(t.title, "Imported chat").slice(0, 200) || "Imported chat",
      createdAt: text(t.createdAt, now),
      updatedAt: text(t.updatedAt, now),
      sessionId: text(t.sessionId) || null,
      messages,
    };
  });
}

// A tool call as the UI keeps it: {id, name, arguments (JSON text), done (all of it came)}.
function pickToolCall(call) {
  const text = (v) => (typeof v === "string" ? v : "");
  return { id: text(call.id) || null, name: text(call.name) || "tool", arguments: text(call.arguments), done: call.done !== false };
}

function pickStats(stats) {
  const number = (v) => (Number.isFinite(v) ? v : null);
  return {
    tokens: number(stats.tokens),
    ttftMs: number(stats.ttftMs),
    tokensPerSecond: number(stats.tokensPerSecond),
    durationMs: number(stats.durationMs),
    finishReason: typeof stats.finishReason === "string" ? stats.finishReason : null,
  };
}
