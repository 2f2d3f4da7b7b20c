// The conversation: the path shown, scrolled with the stream while the reader is at the bottom,
// earlier pages on demand, and the actions on each message. Emits messageText(id) (the text to
// copy), save(id, text) and rerun(id, text) (an edited question: in place, or asked again as a
// new branch; false: not taken), regenerate(id), retry(id), branch(id, step) (the sibling before
// or after), deleteBranch(id), fork(id), older() (the page above), approveCall(index, approved)
// (a tool call of the reply being written, waiting for the user).
import { Widget, byId, clone, copyText, flashCopied } from "./dom.js";
import { ReplyView, fillMessage, messageItem } from "./message.js";

const BOTTOM_SLACK_PX = 24;   // this close to the end still counts as "at the bottom"

export class MessageList extends Widget {
  constructor() {
    super();
    this.stick = true;      // follow the stream: the reader is at the bottom
    this.conversation = byId("conversation");
    this.empty = byId("empty-state");
    this.list = byId("messages");
    this.jump = byId("jump");
    this.older = byId("older");
    this.conversation.addEventListener("scroll", () => {
      this.stick = this.atBottom();
      this.jump.hidden = this.stick;
    }, { passive: true });
    this.jump.addEventListener("click", () => this.scrollToEnd());
    this.list.addEventListener("click", (event) => this.action(event));
    this.older.addEventListener("click", () => this.emit("older"));
    // Scrolled up to the top: the page above comes by itself.
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !this.older.hidden && !this.stick) this.emit("older");
    }, { root: this.conversation }).observe(this.older);
  }

  atBottom() {
    const { scrollTop, scrollHeight, clientHeight } = this.conversation;
    return scrollHeight - scrollTop - clientHeight <= BOTTOM_SLACK_PX;
  }

  scrollToEnd() {
    this.stick = true;
    this.jump.hidden = true;
    this.conversation.scrollTop = this.conversation.scrollHeight;
  }

  followStream() {
    if (this.stick) this.conversation.scrollTop = this.conversation.scrollHeight;
    else this.jump.hidden = false;
  }

  setBusy(busy) {
    this.list.classList.toggle("busy", busy);
  }

  // The path: view messages, root side first; `branchOf(id)`: {index, count} or null.
  // `keepScroll`: the same chat drawn again (it changed): the reader stays where they were.
  show(messages, { branchOf = () => null, hasMore = false, keepScroll = false } = {}) {
    const stick = !keepScroll || this.stick;
    const top = this.conversation.scrollTop;
    this.list.replaceChildren(...messages.map((m) => messageItem(m, { branch: branchOf(m.id) })));
    this.older.hidden = !hasMore;
    this.empty.hidden = messages.length > 0 || hasMore;
    if (stick) this.scrollToEnd();
    else this.conversation.scrollTop = top;
  }

  // The page above the first message shown, drawn without moving what the reader sees.
  prepend(messages, { branchOf = () => null, hasMore = false } = {}) {
    const before = this.conversation.scrollHeight;
    this.list.prepend(...messages.map((m) => messageItem(m, { branch: branchOf(m.id) })));
    this.older.hidden = !hasMore;
    this.conversation.scrollTop += this.conversation.scrollHeight - before;
  }

  // Only the first `count` messages stay (a branch being asked again from there).
  keepFirst(count) {
    [...this.list.children].slice(count).forEach((item) => item.remove());
  }

  // A question being asked (not on the server yet).
  append(message) {
    this.empty.hidden = true;
    this.list.append(messageItem(message, { local: true }));
    this.scrollToEnd();
  }

  // A reply that is about to stream: shows the typing indicator until update() is called.
  beginReply(message) {
    const item = messageItem({ ...message, content: "" }, { local: true });
    item.classList.add("is-waiting", "is-streaming");
    item.setAttribute("aria-busy", "true");
    this.empty.hidden = true;
    this.list.append(item);
    this.scrollToEnd();
    return new ReplyView(this, item);
  }

  // Shows a message as it now is (a finished, stopped or failed reply).
  update(message) {
    const item = this.find(message.id);
    if (!item) return;
    fillMessage(item, message);
    this.followStream();
  }

  // Scrolled to a message (a search hit), marked for a moment.
  reveal(id) {
    const item = this.find(id);
    if (!item) return;
    this.stick = false;
    item.scrollIntoView({ block: "center" });
    item.classList.add("is-found");
    setTimeout(() => item.classList.remove("is-found"), 2000);
  }

  remove(id) {
    this.find(id)?.remove();
    this.empty.hidden = this.list.children.length > 0;
  }

  find(id) {
    return this.list.querySelector(`[data-id="${CSS.escape(id)}"]`);
  }

  action(event) {
    const button = event.target.closest("[data-action]");
    if (!button) return;
    const item = button.closest(".message");
    const id = item.dataset.id;
    const action = button.dataset.action;
    if (action === "copy-code") {
      copyText(button.closest(".code-block").querySelector("code").textContent).then((ok) => ok && flashCopied(button));
    } else if (action === "copy") {
      const text = this.emit("messageText", id);
      if (text != null) copyText(text).then((ok) => ok && flashCopied(button));
    } else if (action === "edit") {
      this.startEdit(item);
    } else if (action === "branch-prev" || action === "branch-next") {
      this.emit("branch", id, action === "branch-prev" ? -1 : 1);
    } else if (action === "approve-call" || action === "decline-call") {
      this.emit("approveCall", Number(button.closest(".tool-call").dataset.index), action === "approve-call");
    } else if (["regenerate", "retry", "fork", "delete"].includes(action)) {
      this.emit({ delete: "deleteBranch" }[action] || action, id);
    }
  }

  // The question's text in a box: Save keeps the edit in place, Save & rerun (Enter) asks it again
  // as a new branch beside the old one.
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
    const submit = (how) => {
      const text = area.value.trim();
      if (!text) return;
      if (how === "save" && text === original.trim()) return restore();
      if (this.emit(how, item.dataset.id, text) !== false) restore();
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit(event.submitter?.value === "save" ? "save" : "rerun");
    });
    form.querySelector("[data-action=cancel-edit]").addEventListener("click", restore);
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        restore();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit("rerun");
      }
    });
    body.hidden = true;
    item.classList.add("editing");
    body.after(form);
    area.focus();
  }
}
