// The chats: the server keeps them as threads (trees of messages); this is the page's view of
// them, and of this browser's cache (store.js), synced by revision. The open thread shows one
// path, from its root down to its current leaf, a page at a time from the newest; a message with
// siblings can show another branch. Changes are written to the server first; the cache follows
// what the server answers.
import { ApiError, NETWORK_ERROR, threadsApi } from "./http.js";

export const PAGE_SIZE = 50;
const byNewest = (a, b) => b.updated_at.localeCompare(a.updated_at);

// A server message as the view draws it.
// `files`: the page's file rows by id (name, type), for the files a message has.
export function viewMessage(m, files = {}) {
  const parts = m.parts || [];
  const joined = (type) => parts.filter((p) => p.type === type).map((p) => p.text).join("");
  const usage = m.usage || {};
  const timings = m.timings || {};
  return {
    id: m.id,
    parentId: m.parent_id,
    role: m.role,
    content: joined("text"),
    reasoning: joined("reasoning"),
    files: parts.filter((p) => p.type === "file")
      .map((p) => ({ id: p.file_id, name: files[p.file_id]?.name || "a deleted file", type: files[p.file_id]?.type || "" })),
    toolCalls: parts.filter((p) => p.type === "tool_call").map((p) => {
      const result = parts.find((r) => r.type === "tool_result" && r.tool_call_id === p.id);
      return { id: p.id, name: p.name, arguments: p.arguments, done: true, ...(result && { result: result.content }) };
    }),
    status: m.status === "cancelled" || m.status === "interrupted" ? "stopped" : m.status,
    model: m.model,
    turnId: m.turn_id,
    stats: m.role === "assistant" && m.usage ? {
      tokens: usage.completion_tokens ?? null,
      ttftMs: timings.ttft_ms ?? null,
      tokensPerSecond: timings.tokens_per_second ?? null,
      durationMs: timings.duration_ms ?? null,
    } : null,
  };
}

const emptyPage = (threadId) => ({ threadId, messages: [], siblings: {}, files: {}, hasMore: false, running: [] });

export class Threads {
  constructor(store, onError) {
    this.store = store;
    this.onError = onError;
    this.list = [];              // summaries, newest first
    this.current = null;         // the open thread's summary; null: a new chat not yet started
    this.draftTools = [];        // the MCP servers a new chat's first question asks for (then its thread keeps them)
    this.page = emptyPage(null); // the open thread's path as far as loaded: server messages, root side first
    this.revision = 0;           // what this page has synced to
    this.offline = false;        // the server could not be reached last time
    this.legacyRefused = false;  // the server refused the chats an older release kept here
  }

  // The path shown, as view messages.
  get messages() {
    return this.page.messages.map((m) => viewMessage(m, this.page.files));
  }

  async load() {
    this.list = (await this.cached(() => this.store.threads(), [])).sort(byNewest);
    this.revision = await this.cached(() => this.store.revision(), 0);
    await this.sync();
  }

  async cached(read, fallback) {
    try {
      return await read();
    } catch (err) {
      this.onError(err.message);
      return fallback;
    }
  }

  keep(write) {
    return write().catch((err) => this.onError(err.message));
  }

  // Runs a read of the server; null when the server could not be reached (offline is set).
  async reach(read) {
    try {
      const result = await read();
      this.offline = false;
      return result;
    } catch (err) {
      if (err.type !== NETWORK_ERROR) throw err;
      this.offline = true;
      return null;
    }
  }

  // What changed on the server since the last sync (deletions included). The open thread is
  // read again when it changed, unless `refreshOpen` is false (a reply of this page is being
  // written there: its end reads it). Returns {reached, openGone}: whether the server answered,
  // and whether the open thread was deleted (another device).
  async sync({ refreshOpen = true } = {}) {
    await this.uploadLegacy();
    let changes;
    try {
      changes = await this.reach(() => threadsApi.changes(this.revision));
    } catch (err) {
      if (err.status === 400 && this.revision) { // a server that has started afresh: sync from 0
        this.revision = 0;
        return this.sync({ refreshOpen });
      }
      throw err;
    }
    if (!changes) return { reached: false, openGone: false };
    const changed = new Map(changes.threads.map((t) => [t.id, t]));
    const gone = new Set(changes.deleted);
    this.list = [...this.list.filter((t) => !changed.has(t.id) && !gone.has(t.id)), ...changed.values()].sort(byNewest);
    if (gone.size) await this.keep(() => this.store.deleteThreads([...gone]));
    await this.keep(() => this.store.putThreads([...changed.values()]));
    this.revision = changes.revision;
    await this.keep(() => this.store.setRevision(this.revision));
    const open = this.current?.id;
    if (open && gone.has(open)) {
      this.startNew();
      return { reached: true, openGone: true };
    }
    if (refreshOpen && open && changed.has(open) && changed.get(open).revision !== this.current.revision) await this.refresh(open);
    return { reached: true, openGone: false };
  }

  // The chats release 0.1.0 kept in this browser go to the server once (it imports that
  // export). A file the server refuses is said once and left in the browser: syncs go on.
  async uploadLegacy() {
    if (this.legacyRefused) return;
    const legacy = await this.cached(() => this.store.legacyExport(), null);
    if (!legacy) return;
    try {
      await threadsApi.import(legacy);
    } catch (err) {
      if (err.type === NETWORK_ERROR) return; // the next sync tries again
      this.legacyRefused = true;
      this.onError(`The chats kept in this browser by an older release could not move to the server: ${err.message}`);
      return;
    }
    await this.keep(() => this.store.clearLegacy());
  }

  // Another user signed in here: nothing of the last one's stays.
  async reset() {
    await this.keep(() => this.store.clear());
    this.list = [];
    this.revision = 0;
    this.startNew();
  }

  // Open a thread as this browser last saw it; refresh() brings the server's copy.
  async select(id) {
    this.current = this.list.find((t) => t.id === id) || { id, title: "", current_leaf: null, revision: 0 };
    this.page = (await this.cached(() => this.store.page(id), null)) || emptyPage(id);
  }

  // The open thread's newest page read again from the server (the cached copy stays when the
  // server is away). Deleted meanwhile: it goes from the list.
  async refresh(id) {
    let page;
    try {
      page = await this.reach(() => threadsApi.path(id, { limit: PAGE_SIZE }));
    } catch (err) {
      if (err.status !== 404) throw err;
      this.list = this.list.filter((t) => t.id !== id);
      await this.keep(() => this.store.deleteThreads([id]));
      if (this.current?.id === id) this.startNew();
      return;
    }
    if (!page) return;
    this.remember(page.thread);
    if (this.current?.id !== id) return;
    this.current = page.thread;
    // The earlier pages already loaded stay when the newest one still follows on from them.
    const loaded = this.page.threadId === id ? this.page.messages : [];
    const at = loaded.findIndex((m) => m.id === page.messages[0]?.id);
    const [earlier, siblings] = at > 0 && page.messages[0].parent_id === loaded[at - 1].id
      ? [loaded.slice(0, at), { ...this.page.siblings, ...page.siblings }] : [[], page.siblings];
    this.page = { threadId: id, messages: [...earlier, ...page.messages], siblings,
      files: { ...(earlier.length ? this.page.files : {}), ...page.files },
      hasMore: earlier.length ? this.page.hasMore : page.has_more, running: page.running };
    await this.keep(() => this.store.putPage({ ...this.page, running: [] }));
  }

  // The page above the first message shown. Returns false when there is none (or no server).
  async older() {
    const first = this.page.messages[0];
    if (!this.page.hasMore || !first) return false;
    const id = this.current.id;
    const page = await this.reach(() => threadsApi.path(id, { limit: PAGE_SIZE, before: first.id, leaf: this.current.current_leaf }));
    if (!page || this.current?.id !== id || this.page.messages[0]?.id !== first.id) return false;
    this.page = { ...this.page, messages: [...page.messages, ...this.page.messages],
      siblings: { ...page.siblings, ...this.page.siblings }, files: { ...page.files, ...this.page.files },
      hasMore: page.has_more };
    return true;
  }

  remember(summary) {
    this.list = [summary, ...this.list.filter((t) => t.id !== summary.id)].sort(byNewest);
    return this.keep(() => this.store.putThreads([summary]));
  }

  startNew() {
    this.current = null;
    this.page = emptyPage(null);
  }

  // Where message `id` is among its siblings: {index, ids}, or null when it has none.
  siblings(id) {
    const ids = this.page.siblings[id];
    return ids ? { index: ids.indexOf(id), ids } : null;
  }

  // Show the branch through message `id` (a sibling chosen with the arrows, a search hit); the
  // server keeps the choice, so a reload or another device shows the same branch.
  async choose(id) {
    const summary = await threadsApi.update(this.current.id, { branch: id });
    this.current = summary;
    await this.refresh(summary.id);
    return summary;
  }

  // The thread a turn writes in, once the server has made it: the open one (a new chat becomes one).
  adopt(id) {
    if (this.current?.id !== id) this.current = { id, title: "", current_leaf: null, revision: 0 };
  }

  async rename(id, title) {
    const summary = await threadsApi.update(id, { title: title.slice(0, 200) });
    if (this.current?.id === id) this.current = summary;
    await this.remember(summary);
  }

  async remove(id) {
    await threadsApi.remove(id);
    this.list = this.list.filter((t) => t.id !== id);
    if (this.current?.id === id) this.startNew();
    await this.keep(() => this.store.deleteThreads([id]));
  }

  // A question's new text, in place (Save: the model is not asked again).
  // New text for a message; its files stay.
  async edit(id, text) {
    const files = (this.page.messages.find((m) => m.id === id)?.parts || []).filter((p) => p.type === "file");
    await threadsApi.editMessage(this.current.id, id, [{ type: "text", text }, ...files]);
    await this.refresh(this.current.id);
  }

  // A message and everything below it.
  async removeBranch(id) {
    await threadsApi.removeMessage(this.current.id, id);
    await this.refresh(this.current.id);
  }

  // A new thread holding the path down to message `id`.
  async fork(id) {
    const summary = await threadsApi.fork(this.current.id, id);
    await this.remember(summary);
    return summary;
  }

  // Search hits ({thread_id, message_id, snippet, title}) on the server, across every branch;
  // offline, the titles this browser has that contain the words.
  async search(query) {
    const titles = new Map(this.list.map((t) => [t.id, t.title]));
    try {
      const { hits } = await threadsApi.search(query);
      return hits.filter((h) => titles.has(h.thread_id)).map((h) => ({ ...h, title: titles.get(h.thread_id) }));
    } catch (err) {
      if (!(err instanceof ApiError) || err.type !== NETWORK_ERROR) throw err;
      const needle = query.toLowerCase();
      return this.list.filter((t) => t.title.toLowerCase().includes(needle))
        .map((t) => ({ thread_id: t.id, message_id: null, snippet: null, title: t.title }));
    }
  }

  // Rill JSON of these threads (all when `ids` is null), whole trees, as the server exports them.
  async exportThreads(ids = null) {
    const threads = [];
    for (const t of this.list.filter((t) => !ids || ids.includes(t.id))) threads.push(await threadsApi.tree(t.id));
    return { format: "rill.threads", version: 2, exported_at: new Date().toISOString(), threads };
  }

  // Returns how many threads came in; an ApiError says what is wrong with the file.
  async importThreads(data) {
    const { imported } = await threadsApi.import(data);
    await this.sync();
    return imported;
  }
}
