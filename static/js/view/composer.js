// The message box, Send and Stop. Emits send(text) (false: not taken, the text stays) and stop().
import { Widget, byId } from "./dom.js";

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
