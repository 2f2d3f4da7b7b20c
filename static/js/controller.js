// What the user does outside a reply: opening, renaming, deleting, searching, exporting and
// importing chats, and changing settings. Replies themselves are turns.js's.
import { getModels, getUsage, setAccessToken } from "./http.js";
import { saveSettings } from "./settings.js";
import { USAGE_DAYS } from "./usage.js";
import { applyTheme, download } from "./view/dom.js";

function exportName(title) {
  const slug = title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40);
  return `rill-${slug || "chat"}.json`;
}

export class Controller {
  constructor({ widgets, threads, turns, settings }) {
    this.sidebar = widgets.sidebar;
    this.messages = widgets.messages;
    this.composer = widgets.composer;
    this.header = widgets.header;
    this.notices = widgets.notices;
    this.settingsDialog = widgets.settingsDialog;
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
    this.header.showModel(this.settings.model || this.models?.default || "");
  }

  error(message) {
    this.notices.error(message);
  }

  async renderThreads() {
    try {
      const threads = await this.threads.search(this.query);
      this.sidebar.render(threads, this.threads.current?.id, { searching: Boolean(this.query) });
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
    this.showThread();
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
    this.showThread();
    this.turns.showActions();
    this.turns.followStreaming({ owner: false });
  }

  showThread() {
    this.header.setTitle(this.threads.current?.title ?? null);
    this.messages.show(this.threads.messages);
  }

  newThread() {
    this.turns.detach();
    this.threads.startNew();
    this.showThread();
    this.renderThreads();
    this.composer.focus();
  }

  async renameThread(id, title) {
    await this.threads.rename(id, title);
    if (this.threads.current?.id === id) this.header.setTitle(title);
    this.renderThreads();
  }

  async deleteThread(id) {
    const open = this.threads.current?.id === id;
    if (open) this.turns.abandon();
    await this.threads.remove(id);
    if (open) this.newThread();
    else this.renderThreads();
    this.notices.announce("Chat deleted.");
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
      download(exportName(data.threads[0]?.title || "chat"), data);
    } catch (err) {
      this.error(`Export failed: ${err.message}`);
    }
  }

  async exportAll() {
    try {
      const data = await this.threads.exportThreads();
      download(`rill-chats-${new Date().toISOString().slice(0, 10)}.json`, data);
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
      this.notices.notice(`Imported ${count} ${count === 1 ? "chat" : "chats"}.`);
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
    this.settingsDialog.open(this.settings, this.models || { providers: [] });
    this.settingsDialog.usage.loading();
    try {
      const body = await usage;
      if (asked === this.usageAsked) this.settingsDialog.usage.show(body);
    } catch (err) {
      if (asked === this.usageAsked) this.settingsDialog.usage.failed(err.message);
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
    applyTheme(settings.theme);
    this.header.showModel(settings.model || this.models?.default || "");
    if (error) this.error(error);
  }
}
