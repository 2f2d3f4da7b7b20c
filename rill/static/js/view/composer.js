// The message box, Send, Stop and the files to send. Emits send(text) (false: not taken, the text
// stays), stop(), attach(files) (picked, pasted or dropped) and detach(key) (a file removed).
// `takesImages`: whether the chosen model reads pictures.
import { Widget, byId, clone } from "./dom.js";

export class Composer extends Widget {
  constructor() {
    super();
    this.busy = false;
    this.form = byId("composer");
    this.prompt = byId("prompt");
    this.send = byId("send");
    this.stop = byId("stop");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.prompt.addEventListener("input", () => this.fit());
    this.stop.addEventListener("click", () => this.emit("stop"));
    this.attachments = byId("attachments");
    this.takesImages = true;
    this.attach = byId("attach");
    const input = (this.attachInput = byId("attach-input"));
    this.attach.addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      if (input.files.length) this.emit("attach", [...input.files]);
      input.value = "";
    });
    this.prompt.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files || [])];
      if (!files.length) return;
      event.preventDefault();
      this.emit("attach", files);
    });
    const wrap = this.form.parentElement;
    wrap.addEventListener("dragover", (event) => {
      if (!event.dataTransfer?.types.includes("Files")) return;
      event.preventDefault();
      wrap.classList.add("dropping");
    });
    wrap.addEventListener("dragleave", () => wrap.classList.remove("dropping"));
    wrap.addEventListener("drop", (event) => {
      wrap.classList.remove("dropping");
      if (!event.dataTransfer?.files.length) return;
      event.preventDefault();
      this.emit("attach", [...event.dataTransfer.files]);
    });
    this.attachments.addEventListener("click", (event) => {
      const button = event.target.closest("[data-action=remove-file]");
      if (button) this.emit("detach", Number(button.closest(".attachment").dataset.key));
    });
    document.querySelector(".skip-link").addEventListener("click", (event) => {
      event.preventDefault();
      this.focus();
    });
  }

  submit() {
    const text = this.prompt.value;
    if (text.trim() && this.emit("send", text.trim()) !== false) {
      this.prompt.value = "";
      this.fit();
    }
  }

  // A text-only model: the paper-clip greyed, offering documents only (pictures are refused).
  readsImages(yes) {
    this.takesImages = yes;
    this.attach.classList.toggle("text-only", !yes);
    this.attach.title = yes ? "Attach files (or paste or drop them here)"
      : "Attach documents: this model reads text only, so no pictures (PDF, text and code files)";
    this.attachInput.accept = yes ? "" : ".pdf,.txt,.md,.csv,.json,.py,.js,.ts,.html,.css,.xml,.yaml,.yml,text/*,application/pdf";
  }

  // The files to send, each with its name, progress or error.
  showAttachments(items) {
    this.attachments.hidden = !items.length;
    this.attachments.replaceChildren(...items.map((item) => {
      const chip = clone("attachment-template");
      chip.dataset.key = item.key;
      chip.classList.toggle("is-error", Boolean(item.error));
      chip.querySelector(".attachment-name").textContent = item.name;
      chip.querySelector(".attachment-state").textContent = item.error || (item.id ? "ready" : "uploading");
      const bar = chip.querySelector("progress");
      bar.hidden = Boolean(item.id || item.error);
      bar.value = item.progress;
      bar.setAttribute("aria-label", `Uploading ${item.name}`);
      chip.querySelector("[data-action=remove-file]").setAttribute("aria-label", `Remove ${item.name}`);
      return chip;
    }));
  }

  fit() {
    this.prompt.style.height = "auto";
    this.prompt.style.height = `${Math.min(this.prompt.scrollHeight, 240)}px`;
  }

  focus() {
    this.prompt.focus();
  }

  setBusy(busy) {
    const stopHadFocus = document.activeElement === this.stop;
    this.busy = busy;
    this.send.hidden = busy;
    this.stop.hidden = !busy;
    if (stopHadFocus || (!busy && document.activeElement === document.body)) this.focus();
  }
}
