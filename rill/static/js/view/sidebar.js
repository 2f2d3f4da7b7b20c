// The chat list: new, open, rename, share, delete (after a confirm), search (the hits, with their
// words marked), export and import; a drawer on narrow screens. Emits newThread(),
// selectThread(id), openHit(threadId, messageId), renameThread(id, title), shareThread(id),
// deleteThread(id), exportThread(id), exportAll(), importFile(text), search(query).
import DOMPurify from "../../vendor/purify.es.js";
import { Widget, byId, clone } from "./dom.js";

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

function shortTime(iso) {
  const date = new Date(iso);
  return date.toDateString() === new Date().toDateString() ? timeFormat.format(date) : dateFormat.format(date);
}

export class Sidebar extends Widget {
  // confirm(text): a promise of whether the user agreed.
  constructor(confirm) {
    super();
    this.confirm = confirm;
    this.el = {
      sidebar: byId("sidebar"), scrim: byId("scrim"), open: byId("open-sidebar"), close: byId("close-sidebar"),
      threads: byId("thread-list"), empty: byId("thread-empty"), search: byId("thread-search"),
      newThread: byId("new-thread"), exportAll: byId("export-all"), import: byId("import"), importFile: byId("import-file"),
    };
    const { el } = this;
    el.newThread.addEventListener("click", () => {
      this.close();
      this.emit("newThread");
    });
    el.threads.addEventListener("click", (event) => this.action(event));
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
    el.open.addEventListener("click", () => this.open());
    el.close.addEventListener("click", () => this.close());
    el.scrim.addEventListener("click", () => this.close());
  }

  render(threads, activeId) {
    const items = threads.map((thread) => {
      const item = this.item(thread.id, thread.title, activeId);
      const time = item.querySelector(".thread-time");
      time.dateTime = thread.updated_at;
      time.textContent = shortTime(thread.updated_at);
      return item;
    });
    this.show(items, "No chats yet.");
  }

  // Search hits: {thread_id, message_id, title, snippet (the server's HTML: escaped text, the
  // words in <mark>)}; each opens the branch its message is on.
  renderHits(hits, activeId) {
    const items = hits.map((hit) => {
      const item = this.item(hit.thread_id, hit.title, activeId);
      item.classList.add("hit");
      if (hit.message_id) item.dataset.messageId = hit.message_id;
      if (hit.snippet) {
        const snippet = document.createElement("span");
        snippet.className = "thread-snippet";
        snippet.append(DOMPurify.sanitize(hit.snippet, { ALLOWED_TAGS: ["mark"], ALLOWED_ATTR: [], RETURN_DOM_FRAGMENT: true }));
        item.querySelector(".thread-time").replaceWith(snippet);
      }
      return item;
    });
    this.show(items, "No chats match.");
  }

  item(id, title, activeId) {
    const item = clone("thread-template");
    item.dataset.id = id;
    item.querySelector(".thread-title").textContent = title;
    if (id === activeId) item.querySelector(".thread-open").setAttribute("aria-current", "page");
    for (const button of item.querySelectorAll("[data-action]")) {
      const label = { rename: "Rename", share: "Share", export: "Export as Markdown", delete: "Delete" }[button.dataset.action];
      button.setAttribute("aria-label", `${label} “${title}”`);
      button.title = label;
    }
    return item;
  }

  show(items, emptyText) {
    this.el.threads.replaceChildren(...items);
    this.el.empty.hidden = items.length > 0;
    this.el.empty.textContent = emptyText;
  }

  action(event) {
    const button = event.target.closest("button");
    const item = event.target.closest(".thread");
    if (!button || !item) return;
    const id = item.dataset.id;
    const title = item.querySelector(".thread-title").textContent;
    if (button.classList.contains("thread-open")) {
      this.close();
      if (item.dataset.messageId) this.emit("openHit", id, item.dataset.messageId);
      else this.emit("selectThread", id);
    } else if (button.dataset.action === "share") {
      this.emit("shareThread", id);
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

  isOpen() {
    return this.el.sidebar.classList.contains("open");
  }

  open() {
    this.el.sidebar.classList.add("open");
    this.el.scrim.hidden = false;
    this.el.open.setAttribute("aria-expanded", "true");
    this.el.newThread.focus();
  }

  close() {
    if (!this.isOpen()) return;
    this.el.sidebar.classList.remove("open");
    this.el.scrim.hidden = true;
    this.el.open.setAttribute("aria-expanded", "false");
    if (this.el.sidebar.contains(document.activeElement)) this.el.open.focus();
  }
}
