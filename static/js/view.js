// The only module that touches the DOM (with its widgets, such as usage-view.js). It shows what
// it is told and reports what the user does through on(name, handler); it decides nothing about chats.
import { renderMarkdown } from "./markdown.js";
import { UsageView } from "./usage-view.js";

const BOTTOM_SLACK_PX = 24;   // this close to the end still counts as "at the bottom"
const NOTICE_MS = 8000;

const byId = (id) => document.getElementById(id);

function clone(templateId) {
  return byId(templateId).content.firstElementChild.cloneNode(true);
}

function html(markup) {
  const template = document.createElement("template");
  template.innerHTML = markup;  // parsed inert: nothing in a template runs or loads
  decorateCode(template.content);
  return template.content;
}

// A header with the language and a copy button above each code block.
function decorateCode(root) {
  for (const pre of root.querySelectorAll("pre")) {
    const block = document.createElement("div");
    block.className = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const lang = document.createElement("span");
    lang.textContent = pre.dataset.lang || "text";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "code-copy";
    copy.dataset.action = "copy-code";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", `Copy ${lang.textContent} code`);
    head.append(lang, copy);
    pre.replaceWith(block);
    block.append(head, pre);
  }
}

// A tool call's arguments: pretty JSON once the call is complete and they parse, the raw
// text so far otherwise (a fragment may end mid-JSON).
export function formatArguments(text, done) {
  if (!done) return text;
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// One card per tool call: its name and arguments, both shown as text.
function fillToolCall(card, call) {
  card.querySelector(".tool-call-name").textContent = call.name;
  card.querySelector("code").textContent = formatArguments(call.arguments, call.done);
  card.classList.toggle("is-done", Boolean(call.done));
}

function toolCallCard(index) {
  const card = clone("tool-call-template");
  card.dataset.index = index;
  return card;
}

function formatMs(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

function formatStats(stats) {
  if (!stats) return "";
  const parts = [];
  if (stats.tokens != null) {
    const counted = stats.tokensCounted ? ["≈", " (counted by Rill)"] : ["", ""];
    parts.push(`${counted[0]}${stats.tokens} ${stats.tokens === 1 ? "token" : "tokens"}${counted[1]}`);
  }
  if (stats.ttftMs != null) parts.push(`${formatMs(stats.ttftMs)} to first token`);
  if (stats.tokensPerSecond != null) parts.push(`${stats.tokensPerSecond.toFixed(1)} tok/s`);
  if (stats.durationMs != null) parts.push(formatMs(stats.durationMs));
  return parts.join(" · ");
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

function shortTime(iso) {
  const date = new Date(iso);
  return date.toDateString() === new Date().toDateString() ? timeFormat.format(date) : dateFormat.format(date);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API outside secure contexts (plain http on a LAN): the old way still works.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

function flashCopied(button) {
  button.classList.add("copied");
  const label = button.querySelector("use");
  if (label) label.setAttribute("href", "#i-check");
  else button.textContent = "Copied";
  setTimeout(() => {
    button.classList.remove("copied");
    if (label) label.setAttribute("href", "#i-copy");
    else button.textContent = "Copy";
  }, 1500);
}

const isEmpty = (message) => !message.content && !message.reasoning && !message.toolCalls?.length;

// One reply while it streams: the typing indicator, the thinking, the growing Markdown, the
// tool call cards, the live rate.
class ReplyView {
  constructor(view, item, message) {
    this.view = view;
    this.item = item;
    this.body = item.querySelector(".body");
    this.stats = item.querySelector(".stats");
    this.thinking = item.querySelector(".thinking");
    this.calls = item.querySelector(".tool-calls");
    this.live = document.createElement("div");
    this.live.className = "live";
    this.body.replaceChildren(this.live);
    // The thinking stays open while it goes on (also when a reload caught it midway), and
    // folds away once the answer or a tool call begins.
    this.answered = Boolean(message.content || message.toolCalls?.length);
    if (message.reasoning && !this.answered) this.thinking.open = true;
    this.thinking.classList.toggle("is-live", !this.answered);
  }

  // Plain text, appended: the thinking so far is never parsed or drawn again.
  addReasoning(text) {
    this.item.classList.remove("is-waiting");
    if (this.thinking.hidden) {
      this.thinking.hidden = false;
      this.thinking.open = !this.answered;
    }
    this.thinking.querySelector(".thinking-text").append(text);
    this.view.followStream();
  }

  // Once only: a reader who opens the thinking again keeps it open.
  answering() {
    if (this.answered) return;
    this.answered = true;
    this.thinking.open = false;
    this.thinking.classList.remove("is-live");
  }

  // `settled`: HTML of blocks that are final, added once; `live`: HTML of the growing block.
  update(settled, live) {
    this.item.classList.remove("is-waiting");
    this.answering();
    if (settled) this.live.before(html(settled));
    this.live.replaceChildren(html(live));
    this.view.followStream();
  }

  // call: {name, arguments (the fragments so far), done}.
  showToolCall(index, call) {
    this.item.classList.remove("is-waiting");
    this.answering();
    let card = this.calls.querySelector(`[data-index="${index}"]`);
    if (!card) {
      card = toolCallCard(index);
      this.calls.append(card);
      this.calls.hidden = false;
    }
    fillToolCall(card, call);
    this.view.followStream();
  }

  showRate(tokensPerSecond) {
    this.stats.textContent = tokensPerSecond == null ? "" : `${tokensPerSecond.toFixed(1)} tok/s`;
  }

  // The streamed content stays as it is; only the footer and the state change.
  finish(message) {
    if (message.status === "error" || isEmpty(message)) {
      this.view.updateMessage(message);
      return;
    }
    this.thinking.classList.remove("is-live");
    this.item.classList.remove("is-waiting", "is-streaming");
    this.item.removeAttribute("aria-busy");
    this.item.classList.toggle("is-stopped", message.status === "stopped");
    this.view.fillStats(this.item, message);
    this.view.followStream();
  }
}

export class View {
  constructor() {
    this.handlers = {};
    this.stick = true;      // follow the stream: the reader is at the bottom
    this.busy = false;
    this.el = {
      sidebar: byId("sidebar"), scrim: byId("scrim"), openSidebar: byId("open-sidebar"), closeSidebar: byId("close-sidebar"),
      threads: byId("thread-list"), threadsEmpty: byId("thread-empty"), search: byId("thread-search"),
      newThread: byId("new-thread"), exportAll: byId("export-all"), import: byId("import"), importFile: byId("import-file"),
      title: byId("thread-title"), modelName: byId("model-name"), openSettings: byId("open-settings"),
      notices: byId("notices"), conversation: byId("conversation"), empty: byId("empty-state"), messages: byId("messages"),
      jump: byId("jump"), composer: byId("composer"), prompt: byId("prompt"), send: byId("send"), stop: byId("stop"),
      status: byId("status"), settings: byId("settings"), settingsForm: byId("settings-form"),
      confirm: byId("confirm"), confirmText: byId("confirm-text"), confirmOk: byId("confirm-ok"),
    };
    this.usage = new UsageView(byId("usage")); // the Settings dialog's usage section
    this.listen();
  }

  on(name, handler) {
    this.handlers[name] = handler;
  }

  emit(name, ...args) {
    return this.handlers[name]?.(...args);
  }

  listen() {
    const { el } = this;
    el.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submitPrompt();
    });
    el.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submitPrompt();
      }
    });
    el.prompt.addEventListener("input", () => this.fitPrompt());
    el.stop.addEventListener("click", () => this.emit("stop"));
    document.querySelector(".skip-link").addEventListener("click", (event) => {
      event.preventDefault();
      this.focusPrompt();
    });
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || event.defaultPrevented || document.querySelector("dialog[open]")) return;
      if (el.sidebar.classList.contains("open")) this.closeSidebar();
      else if (this.busy) this.emit("stop");
    });

    el.conversation.addEventListener("scroll", () => {
      this.stick = this.atBottom();
      el.jump.hidden = this.stick;
    }, { passive: true });
    el.jump.addEventListener("click", () => this.scrollToEnd());
    el.messages.addEventListener("click", (event) => this.messageAction(event));

    el.newThread.addEventListener("click", () => {
      this.closeSidebar();
      this.emit("newThread");
    });
    el.threads.addEventListener("click", (event) => this.threadAction(event));
    let searchTimer = 0;
    el.search.addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => this.emit("search", el.search.value.trim()), 150);
    });
    el.exportAll.addEventListener("click", () => this.emit("exportAll"));
    el.import.addEventListener("click", () => el.importFile.click());
    el.importFile.addEventListener("change", async () => {
      const file = el.importFile.files[0];
      el.importFile.value = "";
      if (file) this.emit("importFile", await file.text());
    });
    el.openSidebar.addEventListener("click", () => this.openSidebar());
    el.closeSidebar.addEventListener("click", () => this.closeSidebar());
    el.scrim.addEventListener("click", () => this.closeSidebar());

    el.openSettings.addEventListener("click", () => this.emit("openSettings"));
    el.settingsForm.elements.temperature.addEventListener("input", () => this.showTemperature());
    el.settings.addEventListener("close", () => {
      if (el.settings.returnValue === "save") this.emit("saveSettings", this.readSettings());
      el.openSettings.focus();
    });
  }

  // Composer

  submitPrompt() {
    const text = this.el.prompt.value;
    if (text.trim() && this.emit("send", text.trim()) !== false) {
      this.el.prompt.value = "";
      this.fitPrompt();
    }
  }

  fitPrompt() {
    const { prompt } = this.el;
    prompt.style.height = "auto";
    prompt.style.height = `${Math.min(prompt.scrollHeight, 240)}px`;
  }

  focusPrompt() {
    this.el.prompt.focus();
  }

  setBusy(busy) {
    const stopHadFocus = document.activeElement === this.el.stop;
    this.busy = busy;
    this.el.send.hidden = busy;
    this.el.stop.hidden = !busy;
    this.el.messages.classList.toggle("busy", busy);
    if (stopHadFocus || (!busy && document.activeElement === document.body)) this.focusPrompt();
  }

  // Conversation

  atBottom() {
    const { scrollTop, scrollHeight, clientHeight } = this.el.conversation;
    return scrollHeight - scrollTop - clientHeight <= BOTTOM_SLACK_PX;
  }

  scrollToEnd() {
    this.stick = true;
    this.el.jump.hidden = true;
    this.el.conversation.scrollTop = this.el.conversation.scrollHeight;
  }

  followStream() {
    if (this.stick) this.el.conversation.scrollTop = this.el.conversation.scrollHeight;
    else this.el.jump.hidden = false;
  }

  showThread(thread, messages) {
    this.el.title.textContent = thread ? thread.title : "New chat";
    document.title = thread ? `${thread.title} · Rill` : "Rill";
    this.el.messages.replaceChildren(...messages.map((m) => this.messageItem(m)));
    this.el.empty.hidden = messages.length > 0;
    this.scrollToEnd();
  }

  setThreadTitle(title) {
    this.el.title.textContent = title;
    document.title = `${title} · Rill`;
  }

  messageItem(message) {
    const item = clone("message-template");
    item.dataset.id = message.id;
    item.classList.add(message.role === "user" ? "from-user" : "from-assistant");
    item.querySelector(".author").textContent = message.role === "user" ? "You said:" : "Rill said:";
    this.fillMessage(item, message);
    return item;
  }

  fillMessage(item, message) {
    item.classList.remove("is-waiting", "is-streaming", "is-stopped", "is-error");
    item.removeAttribute("aria-busy");
    const body = item.querySelector(".body");
    const stats = item.querySelector(".stats");
    this.fillExtras(item, message.role === "assistant" && message.status !== "error" ? message : {});
    if (message.role === "user") {
      body.textContent = message.content;
      stats.textContent = "";
      return;
    }
    if (message.status === "error") {
      item.classList.add("is-error");
      const box = clone("error-template");
      box.querySelector(".error-message").textContent = message.error?.message || "Something went wrong.";
      body.replaceChildren(box);
      stats.textContent = "";
      return;
    }
    if (message.content) {
      body.replaceChildren(html(renderMarkdown(message.content)));
    } else if (isEmpty(message)) {
      body.innerHTML = '<p class="muted">No text.</p>';
    } else {
      body.replaceChildren(); // thinking or tool calls only
    }
    item.classList.toggle("is-stopped", message.status === "stopped");
    this.fillStats(item, message);
  }

  // A reply's thinking (folded) and its tool call cards, as they were saved.
  fillExtras(item, { reasoning = "", toolCalls = [] }) {
    const thinking = item.querySelector(".thinking");
    thinking.hidden = !reasoning;
    thinking.open = false;
    thinking.classList.remove("is-live");
    thinking.querySelector(".thinking-text").textContent = reasoning;
    const calls = item.querySelector(".tool-calls");
    calls.hidden = !toolCalls.length;
    calls.replaceChildren(...toolCalls.map((call, index) => {
      const card = toolCallCard(index);
      fillToolCall(card, call);
      return card;
    }));
  }

  fillStats(item, message) {
    const stats = item.querySelector(".stats");
    stats.textContent = [message.status === "stopped" ? "Stopped" : "", formatStats(message.stats)].filter(Boolean).join(" · ");
    stats.title = message.model ? `Model: ${message.model}` : "";
  }

  appendMessage(message) {
    this.el.empty.hidden = true;
    this.el.messages.append(this.messageItem(message));
    this.scrollToEnd();
  }

  // A reply that is about to stream: shows the typing indicator until update() is called.
  beginReply(message) {
    const item = this.messageItem({ ...message, content: "" });
    item.classList.add("is-waiting", "is-streaming");
    item.setAttribute("aria-busy", "true");
    this.el.empty.hidden = true;
    this.el.messages.append(item);
    this.scrollToEnd();
    return new ReplyView(this, item, message);
  }

  // A reply already on the page (or in the chat just opened) that goes on streaming.
  resumeReply(message) {
    let item = this.findMessage(message.id);
    if (!item) {
      item = this.messageItem(message);
      this.el.empty.hidden = true;
      this.el.messages.append(item);
    }
    item.classList.add("is-streaming");
    item.classList.toggle("is-waiting", isEmpty(message));
    item.setAttribute("aria-busy", "true");
    return new ReplyView(this, item, message);
  }

  // Shows a message as it now is (a finished, stopped or failed reply, an edited question).
  updateMessage(message) {
    const item = this.findMessage(message.id);
    if (!item) return;
    this.fillMessage(item, message);
    this.followStream();
  }

  removeMessage(id) {
    this.findMessage(id)?.remove();
    this.el.empty.hidden = this.el.messages.children.length > 0;
  }

  findMessage(id) {
    return this.el.messages.querySelector(`[data-id="${CSS.escape(id)}"]`);
  }

  // Edit goes on the last question, regenerate on the last reply; neither while a reply runs.
  showActions({ editId = null, regenerateId = null }) {
    for (const button of this.el.messages.querySelectorAll("[data-action=edit], [data-action=regenerate]")) {
      const id = button.closest(".message").dataset.id;
      button.hidden = id !== (button.dataset.action === "edit" ? editId : regenerateId);
    }
  }

  messageAction(event) {
    const button = event.target.closest("[data-action]");
    if (!button) return;
    const item = button.closest(".message");
    const action = button.dataset.action;
    if (action === "copy-code") {
      copyText(button.closest(".code-block").querySelector("code").textContent).then((ok) => ok && flashCopied(button));
    } else if (action === "copy") {
      const text = this.emit("messageText", item.dataset.id);
      if (text != null) copyText(text).then((ok) => ok && flashCopied(button));
    } else if (action === "edit") {
      this.startEdit(item);
    } else if (action === "regenerate") {
      this.emit("regenerate");
    } else if (action === "retry") {
      this.emit("retry");
    }
  }

  startEdit(item) {
    const body = item.querySelector(".body");
    const original = body.textContent;
    const form = clone("edit-template");
    const area = form.querySelector("textarea");
    const label = form.querySelector("label");
    area.id = `edit-${item.dataset.id}`;
    label.htmlFor = area.id;
    area.value = original;
    const restore = () => {
      form.remove();
      body.hidden = false;
      item.classList.remove("editing");
      item.querySelector("[data-action=edit]")?.focus();
    };
    const submit = () => {
      const text = area.value.trim();
      if (!text) return;
      if (text === original.trim()) return restore();
      if (this.emit("editLast", text) !== false) form.remove();
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    form.querySelector("[data-action=cancel-edit]").addEventListener("click", restore);
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        restore();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit();
      }
    });
    body.hidden = true;
    item.classList.add("editing");
    body.after(form);
    area.focus();
  }

  // Threads

  renderThreads(threads, activeId, { searching = false } = {}) {
    const items = threads.map((thread) => {
      const item = clone("thread-template");
      item.dataset.id = thread.id;
      const open = item.querySelector(".thread-open");
      item.querySelector(".thread-title").textContent = thread.title;
      const time = item.querySelector(".thread-time");
      time.dateTime = thread.updatedAt;
      time.textContent = shortTime(thread.updatedAt);
      if (thread.id === activeId) open.setAttribute("aria-current", "page");
      for (const button of item.querySelectorAll("[data-action]")) {
        const label = { rename: "Rename", export: "Export", delete: "Delete" }[button.dataset.action];
        button.setAttribute("aria-label", `${label} “${thread.title}”`);
        button.title = label;
      }
      return item;
    });
    this.el.threads.replaceChildren(...items);
    this.el.threadsEmpty.hidden = items.length > 0;
    this.el.threadsEmpty.textContent = searching ? "No chats match." : "No chats yet.";
  }

  threadAction(event) {
    const button = event.target.closest("button");
    const item = event.target.closest(".thread");
    if (!button || !item) return;
    const id = item.dataset.id;
    const title = item.querySelector(".thread-title").textContent;
    if (button.classList.contains("thread-open")) {
      this.closeSidebar();
      this.emit("selectThread", id);
    } else if (button.dataset.action === "rename") {
      this.startRename(item, title);
    } else if (button.dataset.action === "export") {
      this.emit("exportThread", id);
    } else if (button.dataset.action === "delete") {
      this.confirm(`Delete “${title}”? This cannot be undone.`).then((ok) => ok && this.emit("deleteThread", id));
    }
  }

  startRename(item, title) {
    const input = document.createElement("input");
    input.className = "rename";
    input.value = title;
    input.maxLength = 200;
    input.setAttribute("aria-label", "Chat name");
    const open = item.querySelector(".thread-open");
    open.hidden = true;
    item.prepend(input);
    input.focus();
    input.select();
    let finished = false;
    const finish = (save) => {
      if (finished) return;
      finished = true;
      const value = input.value.trim();
      input.remove();
      open.hidden = false;
      open.focus();
      if (save && value && value !== title) this.emit("renameThread", item.dataset.id, value);
    };
    input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" && event.key !== "Escape") return;
      event.preventDefault(); // or the key would go on to press the button focus returns to
      finish(event.key === "Enter");
    });
    input.addEventListener("blur", () => finish(true));
  }

  openSidebar() {
    this.el.sidebar.classList.add("open");
    this.el.scrim.hidden = false;
    this.el.openSidebar.setAttribute("aria-expanded", "true");
    this.el.newThread.focus();
  }

  closeSidebar() {
    if (!this.el.sidebar.classList.contains("open")) return;
    this.el.sidebar.classList.remove("open");
    this.el.scrim.hidden = true;
    this.el.openSidebar.setAttribute("aria-expanded", "false");
    if (this.el.sidebar.contains(document.activeElement)) this.el.openSidebar.focus();
  }

  // Dialogs, notices, announcements

  confirm(text) {
    const { confirm, confirmText } = this.el;
    confirmText.textContent = text;
    confirm.returnValue = "";
    confirm.showModal();
    return new Promise((resolve) => {
      confirm.addEventListener("close", () => resolve(confirm.returnValue === "ok"), { once: true });
    });
  }

  openSettings(settings, models) {
    const form = this.el.settingsForm.elements;
    const select = form.model;
    const options = [new Option(models.default ? `Server default (${models.default})` : "Server default", "")];
    for (const provider of models.providers || []) {
      for (const model of provider.models || []) {
        const state = provider.available === false ? " (not configured)"
          : model.state && model.state !== "ready" ? ` (${model.state})` : "";
        const option = new Option(model.id + state, model.id);
        option.disabled = provider.available === false;
        options.push(option);
      }
    }
    if (settings.model && !options.some((o) => o.value === settings.model)) {
      options.push(new Option(`${settings.model} (not on this server)`, settings.model));
    }
    select.replaceChildren(...options);
    select.value = settings.model;
    form.stream.checked = settings.stream;
    form.transport.value = settings.transport;
    form.system.value = settings.system;
    form.temperature.value = settings.temperature;
    form.maxTokens.value = settings.maxTokens;
    form.theme.value = settings.theme;
    form.token.value = settings.token;
    this.showTemperature();
    this.el.settings.returnValue = "";
    this.el.settings.showModal();
  }

  showTemperature() {
    const form = this.el.settingsForm.elements;
    form.temperatureValue.value = Number(form.temperature.value).toFixed(2);
  }

  readSettings() {
    const form = this.el.settingsForm.elements;
    return {
      stream: form.stream.checked,
      transport: form.transport.value,
      model: form.model.value,
      system: form.system.value,
      temperature: Number(form.temperature.value),
      maxTokens: Number(form.maxTokens.value),
      theme: form.theme.value,
      token: form.token.value,
    };
  }

  applyTheme(theme) {
    if (theme === "system") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
  }

  showModel(name) {
    this.el.modelName.textContent = name || "";
  }

  // kind: info | warning | error. Sticky notices stay until closed.
  notice(text, { kind = "info", sticky = false } = {}) {
    const shown = [...this.el.notices.children].some((n) => n.firstChild.textContent === text);
    if (shown) return; // a failing store fails every write: say it once
    const box = document.createElement("div");
    box.className = `notice ${kind}`;
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    const message = document.createElement("span");
    message.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "icon-button tiny";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => box.remove());
    box.append(message, close);
    this.el.notices.append(box);
    if (!sticky) setTimeout(() => box.remove(), NOTICE_MS);
  }

  // Said once by screen readers; never called per token.
  announce(text) {
    this.el.status.textContent = "";
    setTimeout(() => { this.el.status.textContent = text; }, 50); // a change, even for the same words
  }

  download(filename, data) {
    const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = filename;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
}
