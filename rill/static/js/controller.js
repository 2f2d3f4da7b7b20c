// What the user does outside a reply: opening chats and branches, editing, deleting, forking,
// sharing, searching, exporting and importing, and changing settings; and keeping the page in
// step with the server (a change on another device shows here at once). Replies are turns.js's.
import { watchFeed, watchSocket } from "./changes.js";
import { getMcpServers, getModels, getUsage, modelEvents, modelsApi, setAccessToken, threadsApi } from "./http.js";
import { saveSettings } from "./settings.js";
import { viewMessage } from "./threads.js";
import { USAGE_DAYS } from "./usage.js";
import { applyTheme, download } from "./view/dom.js";

const FIND_PAGES = 40; // how far up a search hit is looked for (40 pages of 50 messages)

function fileName(title, extension) {
  const slug = title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40);
  return `rill-${slug || "chat"}.${extension}`;
}

export class Controller {
  constructor({ widgets, threads, turns, settings }) {
    this.sidebar = widgets.sidebar;
    this.messages = widgets.messages;
    this.composer = widgets.composer;
    this.header = widgets.header;
    this.notices = widgets.notices;
    this.settingsDialog = widgets.settingsDialog;
    this.tools = widgets.tools;
    this.shareDialog = widgets.shareDialog;
    this.confirm = widgets.confirm;
    this.threads = threads;
    this.turns = turns;
    this.settings = settings;
    this.query = "";
    this.models = null;
    this.usageAsked = 0;      // which opening of Settings the usage shown belongs to
    this.sharing = null;      // the thread whose links the share dialog shows
    this.stopWatching = null;
    this.modelsFeed = null;   // the AbortController of the model events while Settings is open
    this.syncing = null;      // the sync under way
    this.syncAgain = false;   // a change was heard during it
    this.loadingOlder = false;
  }

  async start() {
    try {
      await this.threads.load();
    } catch (err) {
      this.error(err.message);
    }
    if (this.threads.list.length) await this.selectThread(this.threads.list[0].id);
    else this.newThread();
    this.watch();
    this.loadModels();
    this.loadTools();
  }

  async loadTools() {
    try {
      this.tools.setServers((await getMcpServers()).servers);
    } catch {
      this.tools.setServers([]); // an older server, or none reachable: no tools to offer
    }
    this.tools.show(this.threads.current?.mcp_servers || this.threads.draftTools);
  }

  // The open chat's tools: its thread keeps them; a new chat's go with its first question.
  async chooseTools(names) {
    const current = this.threads.current;
    if (!current) {
      this.threads.draftTools = names;
      return;
    }
    try {
      const summary = await threadsApi.update(current.id, { mcp_servers: names });
      current.mcp_servers = summary.mcp_servers;
    } catch (err) {
      this.error(err.message);
      this.tools.show(current.mcp_servers || []);
    }
  }

  // Hears of changes on the server (again after the transport or the token changed).
  watch() {
    this.stopWatching?.();
    const onChange = () => this.sync();
    const onReach = (reached) => {
      if (reached) {
        this.sync();
      } else {
        this.threads.offline = true;
        this.showReach();
      }
    };
    this.stopWatching = this.settings.stream && this.settings.transport === "socketio"
      ? watchSocket(this.turns.socketTransport(), onChange, onReach)
      : watchFeed(onChange, onReach);
  }

  // One sync at a time; a change heard meanwhile makes one more after it.
  async sync() {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      do {
        this.syncAgain = false;
        const page = this.threads.page;
        let openGone = false;
        try {
          ({ openGone } = await this.threads.sync({ refreshOpen: !this.turns.busy }));
        } catch (err) {
          this.error(err.message);
        }
        if (openGone) { // deleted on another device
          this.turns.detach();
          this.showThread();
          this.notices.notice("This chat was deleted on another device.");
        } else if (this.threads.page !== page && !this.turns.busy) {
          this.showThread({ keepScroll: true }); // changed on another device
        }
        this.header.setTitle(this.threads.current?.title || null);
        this.showReach();
        await this.renderThreads();
      } while (this.syncAgain);
    })();
    try {
      await this.syncing;
    } finally {
      this.syncing = null;
    }
  }

  showReach() {
    this.notices.offline(this.threads.offline);
  }

  async loadModels() {
    try {
      this.models = await getModels();
    } catch {
      this.models = null; // the server may be starting; a send says so if it is still down
    }
    this.showModel();
  }

  // The chosen model in the header; pictures only for a model that reads them (unknown: the
  // server says, when the question is sent).
  showModel() {
    const { name, listed } = this.chosenModel();
    this.header.showModel(name);
    this.composer.readsImages(listed?.input_modalities ? listed.input_modalities.includes("image") : true);
  }

  // The model replies come from (its name, and its entry in the server's list when it is there).
  chosenModel() {
    const name = this.settings.model || this.models?.default || "";
    return { name, listed: this.models?.providers?.flatMap((p) => p.models || []).find((m) => m.id === name) };
  }

  // A model chosen while it is out of memory (RILL_MAX_LOADED_MODELS) or still loading: the first
  // reply waits for it to load, so say so.
  sayWhenModelLoads() {
    const { name, listed } = this.chosenModel();
    if (listed?.state === "unloaded") this.notices.notice(`${name} is loaded when you send (a few seconds, more for a large model).`);
    else if (listed?.state === "loading") this.notices.notice(`${name} is loading; the first reply starts when it is ready.`);
  }

  error(message) {
    this.notices.error(message);
  }

  // Runs an action on the server; its failure is shown, not thrown. undefined: it failed.
  async attempt(action, what) {
    try {
      return (await action()) ?? true;
    } catch (err) {
      this.error(`${what} failed: ${err.message}`);
      return undefined;
    }
  }

  async renderThreads() {
    const active = this.threads.current?.id;
    if (!this.query) {
      this.sidebar.render(this.threads.list, active);
      return;
    }
    const query = this.query;
    const hits = await this.attempt(() => this.threads.search(query), "Search");
    if (hits && query === this.query) this.sidebar.renderHits(hits, active);
  }

  // The path shown, from what the threads hold; a reply being written there is followed.
  showThread({ keepScroll = false } = {}) {
    const { current, page } = this.threads;
    this.header.setTitle(current?.title || null);
    if (current) this.threads.draftTools = [];
    this.tools.show(current?.mcp_servers || this.threads.draftTools);
    this.messages.show(this.viewMessages(page.messages), { branchOf: (id) => this.branchOf(id), hasMore: page.hasMore, keepScroll });
    this.turns.follow(page.running);
  }

  viewMessages(messages) {
    return messages.map((m) => {
      const view = viewMessage(m, this.threads.page.files);
      const error = this.turns.errors.get(m.id);
      return error ? { ...view, error } : view;
    });
  }

  branchOf(id) {
    const siblings = this.threads.siblings(id);
    return siblings && { index: siblings.index, count: siblings.ids.length };
  }

  async selectThread(id) {
    this.turns.detach();
    await this.threads.select(id); // this browser's copy first, then the server's
    this.showThread();
    this.renderThreads();
    await this.attempt(() => this.threads.refresh(id), "Opening the chat");
    if (!this.threads.current || this.threads.current.id === id) this.showThread(); // gone (404): a new chat
    this.showReach();
  }

  // A search hit: its thread, on the branch its message is on, scrolled to it.
  async openHit(threadId, messageId) {
    this.turns.detach();
    await this.threads.select(threadId);
    const found = await this.attempt(async () => {
      await this.threads.choose(messageId);
      for (let n = 0; n < FIND_PAGES && !this.threads.page.messages.some((m) => m.id === messageId); n++) {
        if (!(await this.threads.older())) break;
      }
    }, "Opening the result");
    this.showThread(); // the hit's chat, on its branch when that worked
    if (found) this.messages.reveal(messageId);
    this.renderThreads();
  }

  async showOlder() {
    if (this.loadingOlder) return;
    this.loadingOlder = true;
    try {
      const shown = this.threads.page.messages.length;
      if (await this.attempt(() => this.threads.older(), "Loading earlier messages")) {
        const added = this.threads.page.messages.slice(0, this.threads.page.messages.length - shown);
        this.messages.prepend(this.viewMessages(added), { branchOf: (id) => this.branchOf(id), hasMore: this.threads.page.hasMore });
      }
    } finally {
      this.loadingOlder = false;
    }
  }

  // The sibling `step` before or after message `id`, and the branch below it.
  async branch(id, step) {
    const siblings = this.threads.siblings(id);
    const target = siblings?.ids[siblings.index + step];
    if (!target || this.turns.busy) return;
    await this.attempt(() => this.threads.choose(target), "Showing that version");
    this.showThread({ keepScroll: true });
  }

  // A reply started a new chat: it is the open one now.
  started(threadId) {
    this.threads.adopt(threadId);
    this.sync();
  }

  // A reply ended: the thread as the server now has it (ids, versions, figures). The composer
  // waits for it, so that the next question goes under this reply.
  async replyEnded(threadId) {
    if (this.threads.current?.id !== threadId) return;
    await this.attempt(() => this.threads.refresh(threadId), "Reading the chat again");
    if (this.threads.current?.id === threadId) this.showThread({ keepScroll: true });
    this.renderThreads();
  }

  // false: not taken (a reply is running), so the edit box stays.
  saveEdit(id, text) {
    if (this.turns.busy) return false;
    this.attempt(() => this.threads.edit(id, text), "Saving the edit").then(() => this.showThread({ keepScroll: true }));
    return true;
  }

  regenerate(id) {
    const reply = this.threads.page.messages.find((m) => m.id === id);
    if (reply?.parent_id) this.turns.regenerate(reply.parent_id);
  }

  async deleteBranch(id) {
    if (this.turns.busy) return;
    if (!(await this.confirm.ask("Delete this message and everything below it, on every branch? This cannot be undone."))) return;
    await this.attempt(() => this.threads.removeBranch(id), "Deleting");
    this.showThread({ keepScroll: true });
    this.notices.announce("Deleted.");
  }

  async fork(id) {
    const summary = await this.attempt(() => this.threads.fork(id), "Forking");
    if (!summary) return;
    await this.selectThread(summary.id);
    this.notices.notice(`Forked into a new chat: “${summary.title}”.`);
  }

  newThread() {
    this.turns.detach();
    this.threads.startNew();
    this.showThread();
    this.renderThreads();
    this.composer.focus();
  }

  async renameThread(id, title) {
    await this.attempt(() => this.threads.rename(id, title), "Renaming");
    if (this.threads.current?.id === id) this.header.setTitle(this.threads.current.title);
    this.renderThreads();
  }

  async deleteThread(id) {
    const open = this.threads.current?.id === id;
    if (open) this.turns.abandon();
    if (await this.attempt(() => this.threads.remove(id), "Deleting the chat") === undefined) return;
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

  async shareThread(id) {
    this.sharing = this.threads.list.find((t) => t.id === id) || { id, title: "" };
    this.shareDialog.open(this.sharing.title);
    await this.showShares();
  }

  async showShares() {
    const id = this.sharing.id;
    try {
      const { shares } = await threadsApi.shares(id);
      if (this.sharing?.id === id) this.shareDialog.show(shares.map(({ token }) => ({ token, url: `${location.origin}/s/${token}` })));
    } catch (err) {
      this.shareDialog.say(err.message);
    }
  }

  async createShare() {
    try {
      await threadsApi.share(this.sharing.id);
      await this.showShares();
    } catch (err) {
      this.shareDialog.say(`No link was made: ${err.message}`);
    }
  }

  async revokeShare(token) {
    try {
      await threadsApi.unshare(this.sharing.id, token);
      await this.showShares();
      this.notices.announce("Link revoked.");
    } catch (err) {
      this.shareDialog.say(`The link was not revoked: ${err.message}`);
    }
  }

  async exportThread(id) {
    const title = this.threads.list.find((t) => t.id === id)?.title || "chat";
    const markdown = await this.attempt(() => threadsApi.exportAs(id, "markdown"), "Export");
    if (markdown !== undefined) download(fileName(title, "md"), markdown);
  }

  async exportAll() {
    const data = await this.attempt(() => this.threads.exportThreads(), "Export");
    if (data) download(`rill-chats-${new Date().toISOString().slice(0, 10)}.json`, data);
  }

  async importFile(text) {
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      this.error("That file is not JSON, so it cannot be a Rill, ChatGPT or Open WebUI export.");
      return;
    }
    const count = await this.attempt(() => this.threads.importThreads(data), "Import");
    if (count === undefined) return;
    this.notices.notice(count ? `Imported ${count} ${count === 1 ? "chat" : "chats"}.` : "Nothing new: those chats are here already.");
    this.renderThreads();
  }

  // Perhaps another user: this browser's copy of the last one's chats goes, and the new one's come.
  // A new chat stays on screen, so that a question refused for want of a token can be retried.
  async signedInAgain() {
    const wasOpen = this.threads.current;
    if (wasOpen) this.turns.detach();
    await this.threads.reset();
    if (wasOpen) this.showThread();
    await this.sync();
  }

  // Usage is asked for again on every opening, beside the models, and shown when it comes.
  async openSettings() {
    const asked = ++this.usageAsked;
    const usage = getUsage(USAGE_DAYS);
    usage.catch(() => {}); // handled below; not "unhandled" while the models load
    if (!this.models) await this.loadModels();
    this.settingsDialog.open(this.settings, this.models || { providers: [] });
    this.followModels();
    this.settingsDialog.usage.loading();
    try {
      const body = await usage;
      if (asked === this.usageAsked) this.settingsDialog.usage.show(body);
    } catch (err) {
      if (asked === this.usageAsked) this.settingsDialog.usage.failed(err.message);
    }
  }

  // While Settings is open, the picker follows the server's model events (pulls' progress bars).
  async followModels() {
    this.modelsFeed?.abort();
    const feed = (this.modelsFeed = new AbortController());
    try {
      for await (const models of modelEvents(feed.signal)) {
        this.models = models;
        this.settingsDialog.showModels(models);
        this.showModel();
      }
    } catch (err) {
      if (!feed.signal.aborted) this.settingsDialog.pulls.say(err.message, true);
    }
  }

  stopFollowingModels() {
    this.modelsFeed?.abort();
    this.modelsFeed = null;
  }

  async pullModel(name) {
    try {
      await modelsApi.pull(name);
      this.settingsDialog.pulls.pulled();
    } catch (err) {
      this.settingsDialog.pulls.say(err.message, true);
    }
  }

  async cancelPull(id) {
    try {
      await modelsApi.cancel(id);
    } catch (err) {
      this.settingsDialog.pulls.say(err.message, true);
    }
  }

  saveSettings(values) {
    const { settings, error } = saveSettings(values);
    const newToken = settings.token !== this.settings.token;
    const newFeed = newToken || settings.transport !== this.settings.transport || settings.stream !== this.settings.stream;
    Object.assign(this.settings, settings);
    if (newToken) {
      setAccessToken(settings.token);
      this.turns.tokenChanged();
      this.models = null; // listed again with the new token
      this.signedInAgain();
    }
    if (newFeed) this.watch();
    applyTheme(settings.theme);
    this.showModel();
    this.sayWhenModelLoads();
    if (error) this.error(error);
  }
}
