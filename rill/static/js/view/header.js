// The top bar: the open chat's title (also the page's), the model, the Settings button (emits
// openSettings).
import { Widget, byId } from "./dom.js";

export class Header extends Widget {
  constructor() {
    super();
    this.title = byId("thread-title");
    this.model = byId("model-name");
    this.settings = byId("open-settings");
    this.settings.addEventListener("click", () => this.emit("openSettings"));
  }

  // null: a new chat, not yet titled.
  setTitle(title) {
    this.title.textContent = title ?? "New chat";
    document.title = title == null ? "Rill" : `${title} · Rill`;
  }

  showModel(name) {
    this.model.textContent = name || "";
  }
}
