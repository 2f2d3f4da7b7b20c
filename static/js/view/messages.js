// The conversation: its messages in order, scrolled with the stream while the reader is at the
// bottom, and the actions on them (copy, edit the last question, regenerate or retry the last
// reply). Emits messageText(id) (the text to copy), editLast(text) (false: not taken),
// regenerate() and retry().
import { Widget, byId, clone, copyText, flashCopied } from "./dom.js";
import { ReplyView, fillMessage, isEmpty, messageItem } from "./message.js";

const BOTTOM_SLACK_PX = 24;   // this close to the end still counts as "at the bottom"

export class MessageList extends Widget {
  constructor() {
    super();
    this.stick = true;      // follow the stream: the reader is at the bottom
    this.conversation = byId("conversation");
    this.empty = byId("empty-state");
    this.list = byId("messages");
    this.jump = byId("jump");
    this.conversation.addEventListener("scroll", () => {
      this.stick = this.atBottom();
      this.jump.hidden = this.stick;
    }, { passive: true });
    this.jump.addEventListener("click", () => this.scrollToEnd());
    this.list.addEventListener("click", (event) => this.action(event));
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

  show(messages) {
    this.list.replaceChildren(...messages.map(messageItem));
    this.empty.hidden = messages.length > 0;
    this.scrollToEnd();
  }

  append(message) {
    this.empty.hidden = true;
    this.list.append(messageItem(message));
    this.scrollToEnd();
  }

  // A reply that is about to stream: shows the typing indicator until update() is called.
  beginReply(message) {
    const item = messageItem({ ...message, content: "" });
    item.classList.add("is-waiting", "is-streaming");
    item.setAttribute("aria-busy", "true");
    this.empty.hidden = true;
    this.list.append(item);
    this.scrollToEnd();
    return new ReplyView(this, item, message);
  }

  // A reply already on the page (or in the chat just opened) that goes on streaming.
  resumeReply(message) {
    let item = this.find(message.id);
    if (!item) {
      item = messageItem(message);
      this.empty.hidden = true;
      this.list.append(item);
    }
    item.classList.add("is-streaming");
    item.classList.toggle("is-waiting", isEmpty(message));
    item.setAttribute("aria-busy", "true");
    return new ReplyView(this, item, message);
  }

  // Shows a message as it now is (a finished, stopped or failed reply, an edited question).
  update(message) {
    const item = this.find(message.id);
    if (!item) return;
    fillMessage(item, message);
    this.followStream();
  }

  remove(id) {
    this.find(id)?.remove();
    this.empty.hidden = this.list.children.length > 0;
  }

  find(id) {
    return this.list.querySelector(`[data-id="${CSS.escape(id)}"]`);
  }

  // Edit goes on the last question, regenerate on the last reply; neither while a reply runs.
  showActions({ editId = null, regenerateId = null }) {
    for (const button of this.list.querySelectorAll("[data-action=edit], [data-action=regenerate]")) {
      const id = button.closest(".message").dataset.id;
      button.hidden = id !== (button.dataset.action === "edit" ? editId : regenerateId);
    }
  }

  action(event) {
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
}
