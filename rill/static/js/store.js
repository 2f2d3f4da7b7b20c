// This browser's copy of the threads the server keeps: IndexedDB as a cache, synced by revision,
// so chats still show when the server is unreachable. It holds what the server sent (summaries,
// and the page of each thread last shown here) and the revision it was synced to; never file bytes.
// Every failure becomes a StoreError whose message can be shown as it is.
const DB_NAME = "rill";
const DB_VERSION = 2; // 1: the browser kept the chats itself (see legacyExport)

export class StoreError extends Error {}

function explain(err) {
  if (err?.name === "QuotaExceededError") return "the browser's storage for this site is full";
  if (err?.name === "InvalidStateError" || err?.name === "SecurityError") return "this browser does not allow storage here (private mode?)";
  return err?.message || String(err);
}

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export async function openStore() {
  if (!globalThis.indexedDB) throw new StoreError("Chats cannot be kept in this browser: it has no IndexedDB. They show while the server is reachable.");
  try {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    const blocked = new Promise((_, reject) => {
      request.onblocked = () => reject(new Error("a tab with an older Rill holds this browser's copy of the chats; close it, then reload"));
    });
    request.onupgradeneeded = (event) => {
      const db = request.result;
      if (event.oldVersion === 1) { // the chats this browser kept itself: kept aside until the server has them
        request.transaction.objectStore("threads").name = "legacy_threads";
        request.transaction.objectStore("messages").name = "legacy_messages";
      }
      db.createObjectStore("threads", { keyPath: "id" });
      db.createObjectStore("pages", { keyPath: "threadId" });
      db.createObjectStore("meta", { keyPath: "key" });
    };
    const db = await Promise.race([done(request), blocked]);
    db.onversionchange = () => db.close(); // a newer release's page wants to upgrade it
    return new Store(db);
  } catch (err) {
    throw new StoreError(`Chats cannot be kept in this browser: ${explain(err)}. They show while the server is reachable.`);
  }
}

class Store {
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

  threads() {
    return this.run("threads", "readonly", (s) => done(s.threads.getAll()), "Chats could not be read");
  }

  // The page of a thread last shown here ({threadId, messages, siblings, hasMore}), or undefined.
  page(threadId) {
    return this.run("pages", "readonly", (s) => done(s.pages.get(threadId)), "Messages could not be read");
  }

  putThreads(threads) {
    return this.run("threads", "readwrite", (s) => Promise.all(threads.map((t) => done(s.threads.put(t)))),
      "Chats were not kept");
  }

  putPage(page) {
    return this.run("pages", "readwrite", (s) => done(s.pages.put(page)), "Messages were not kept");
  }

  deleteThreads(ids) {
    return this.run(["threads", "pages"], "readwrite", (s) => Promise.all(ids.flatMap((id) =>
      [done(s.threads.delete(id)), done(s.pages.delete(id))])), "Chats were not forgotten");
  }

  async revision() {
    const row = await this.run("meta", "readonly", (s) => done(s.meta.get("revision")), "The sync point could not be read");
    return row?.value ?? 0;
  }

  setRevision(value) {
    return this.run("meta", "readwrite", (s) => done(s.meta.put({ key: "revision", value })), "The sync point was not kept");
  }

  // Everything this browser kept of the server's chats (another user signed in here).
  clear() {
    return this.run(["threads", "pages", "meta"], "readwrite",
      (s) => Promise.all([done(s.threads.clear()), done(s.pages.clear()), done(s.meta.clear())]), "The old copy was not cleared");
  }

  // The chats of release 0.1.0, which this browser kept itself, as that release exported them
  // (the server imports this format); null when there are none.
  async legacyExport() {
    if (!this.db.objectStoreNames.contains("legacy_threads")) return null;
    const [threads, messages] = await this.run(["legacy_threads", "legacy_messages"], "readonly",
      (s) => Promise.all([done(s.legacy_threads.getAll()), done(s.legacy_messages.getAll())]), "Older chats could not be read");
    if (!threads.length) return null;
    return {
      format: "rill.threads", version: 1,
      threads: threads.map((t) => ({ ...t, messages: messages.filter((m) => m.threadId === t.id) })),
    };
  }

  clearLegacy() {
    return this.run(["legacy_threads", "legacy_messages"], "readwrite",
      (s) => Promise.all([done(s.legacy_threads.clear()), done(s.legacy_messages.clear())]), "Older chats were not cleared");
  }
}

// Where the cache goes when the browser gives no storage (private mode, no IndexedDB): the same
// calls, in this page's memory (as copies, as IndexedDB keeps them).
export class MemoryStore {
  constructor() {
    this.threadsById = new Map();
    this.pages = new Map();
    this.meta = new Map();
  }

  async threads() {
    return [...this.threadsById.values()].map((t) => structuredClone(t));
  }

  async page(threadId) {
    return structuredClone(this.pages.get(threadId));
  }

  async putThreads(threads) {
    for (const t of threads) this.threadsById.set(t.id, structuredClone(t));
  }

  async putPage(page) {
    this.pages.set(page.threadId, structuredClone(page));
  }

  async deleteThreads(ids) {
    for (const id of ids) {
      this.threadsById.delete(id);
      this.pages.delete(id);
    }
  }

  async revision() {
    return this.meta.get("revision") ?? 0;
  }

  async setRevision(value) {
    this.meta.set("revision", value);
  }

  async clear() {
    this.threadsById.clear();
    this.pages.clear();
    this.meta.clear();
  }

  async legacyExport() {
    return null;
  }

  async clearLegacy() {}
}
