// What the user does outside a reply: opening, renaming, deleting, searching, exporting and
// importing chats, and changing settings. Replies themselves are turns.js's.
import { getModels, getUsage, setAccessToken } from "./api.js";
import { saveSettings } from "./settings.js";
import { USAGE_DAYS } from "./usage.js";

function exportName(title) {
  const slug = title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40);
  return `rill-${slug || "chat"}.json`;
}

export class Controller {
  constructor({ view, threads, turns, settings }) {
    this.view = view;
    this.threads = threads;
    this.turns = turns;
    this.settings = settings;
    this.query = "";
    this.models = null;
    this.usageAsked = 0;  // which opening of Settings the usage shown belongs to
  }

  async start() {
    try {
      await this.threads.load();
    } catch (err) {
      this.error(err.message);
    }
    if (this.threads.list.length) await this.selectThread(this.threads.list[0].id);
    else this.newThread();
    this.loadModels();
  }

  async loadModels() {
    try {
      this.models = await getModels();
    } catch {
      this.models = null; // the server may be starting; a send says so if it is still down
    }
    this.view.showModel(this.settings.model || this.models?.default || "");
  }

  error(message) {
    this.view.notice(message, { kind: "error", sticky: true });
  }

  async renderThreads() {
    try {
      const threads = await this.threads.search(this.query);
      this.view.renderThreads(threads, this.threads.current?.id, { searching: Boolean(this.query) });
    } catch (err) {
      this.error(err.message);
    }
  }

  async selectThread(id) {
    this.turns.detach();
    try {
      await this.threads.select(id);
    } catch (err) {
      this.error(err.message);
      return;
    }
    // A reply still streaming goes on on the server: follow it. One from before replies had
    // turn ids was cut off when the page closed.
    for (const message of this.threads.messages) {
      if (message.status === "streaming" && (!message.turnId || message !== this.threads.messages.at(-1))) {
        message.status = "stopped";
        this.threads.saveMessage(message);
      }
    }
    this.view.showThread(this.threads.current, this.threads.messages);
    this.turns.showActions();
    this.turns.followStreaming({ owner: true });
    this.renderThreads();
  }

  // Another tab wrote to chat `id`: show it as it is now, and follow a reply it started.
  async remoteChange(id) {
    try {
      await this.threads.refresh(id);
    } catch (err) {
      this.error(err.message);
      return;
    }
    this.renderThreads();
    if (this.threads.current?.id !== id || this.turns.busy) return;
    this.view.showThread(this.threads.current, this.threads.messages);
    this.turns.showActions();
    this.turns.followStreaming({ owner: false });
  }

  newThread() {
    this.turns.detach();
    this.threads.startNew();
    this.view.showThread(null, []);
    this.renderThreads();
    this.view.focusPrompt();
  }

  async renameThread(id, title) {
    await this.threads.rename(id, title);
    if (this.threads.current?.id === id) this.view.setThreadTitle(title);
    this.renderThreads();
  }

  async deleteThread(id) {
    const open = this.threads.current?.id === id;
    if (open) this.turns.abandon();
    await this.threads.remove(id);
    if (open) this.newThread();
    else this.renderThreads();
    this.view.announce("Chat deleted.");
  }

  search(query) {
    this.query = query;
    this.renderThreads();
  }

  messageText(id) {
    return this.threads.messages.find((m) => m.id === id)?.content ?? null;
  }

  async exportThread(id) {
    try {
      const data = await this.threads.exportThreads([id]);
      this.view.download(exportName(data.threads[0]?.title || "chat"), data);
    } catch (err) {
      this.error(`Export failed: ${err.message}`);
    }
  }

  async exportAll() {
    try {
      const data = await this.threads.exportThreads();
      this.view.download(`rill-chats-${new Date().toISOString().slice(0, 10)}.json`, data);
    } catch (err) {
      this.error(`Export failed: ${err.message}`);
    }
  }

  async importFile(text) {
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      this.error("That file is not JSON, so it cannot be a Rill export.");
      return;
    }
    try {
      const count = await this.threads.importThreads(data);
      this.view.notice(`Imported ${count} ${count === 1 ? "chat" : "chats"}.`);
      this.renderThreads();
    } catch (err) {
      this.error(`Import failed: ${err.message}`);
    }
  }

  // Usage is asked for again on every opening, beside the models, and shown when it comes.
  async openSettings() {
    const asked = ++this.usageAsked;
    const usage = getUsage(USAGE_DAYS);
    usage.catch(() => {}); // handled below; not "unhandled" while the models load
    if (!this.models) await this.loadModels();
    this.view.openSettings(this.settings, this.models || { providers: [] });
    this.view.usage.loading();
    try {
      const body = await usage;
      if (asked === this.usageAsked) this.view.usage.show(body);
    } catch (err) {
      if (asked === this.usageAsked) this.view.usage.failed(err.message);
    }
  }

  saveSettings(values) {
    const { settings, error } = saveSettings(values);
    const newToken = settings.token !== this.settings.token;
    Object.assign(this.settings, settings);
    if (newToken) {
      setAccessToken(settings.token);
      this.turns.tokenChanged();
      this.models = null; // listed again with the new token
    }
    this.view.applyTheme(settings.theme);
    this.view.showModel(settings.model || this.models?.default || "");
    if (error) this.error(error);
  }
}
