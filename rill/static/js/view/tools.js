// The chat's tools: the composer's Tools button (shown when the server has MCP servers; marked
// when the chat uses some) and its dialog, a checkbox per server with its tools' names. Emits
// choose(names) when the choice changes.
import { Widget, byId, clone } from "./dom.js";

export class ToolsPicker extends Widget {
  constructor() {
    super();
    this.button = byId("tools");
    this.dialog = byId("tools-dialog");
    this.list = byId("tools-list");
    this.servers = [];
    this.chosen = [];
    this.button.addEventListener("click", () => this.open());
    this.list.addEventListener("change", () => {
      this.chosen = [...this.list.querySelectorAll("input:checked")].map((box) => box.value);
      this.showChosen();
      this.emit("choose", this.chosen);
    });
  }

  // servers: GET /api/mcp's list; none: no button.
  setServers(servers) {
    this.servers = servers;
    this.button.hidden = !servers.length;
  }

  // The open chat's servers (a new chat's: none, until chosen).
  show(chosen) {
    this.chosen = chosen.filter((name) => this.servers.some((s) => s.name === name));
    this.showChosen();
  }

  showChosen() {
    const on = this.chosen.length > 0;
    this.button.classList.toggle("is-on", on);
    this.button.setAttribute("aria-pressed", String(on));
    this.button.title = on ? `Tools: ${this.chosen.join(", ")}` : "Tools this chat may run (none)";
  }

  open() {
    this.list.replaceChildren(...this.servers.map((server) => {
      const row = clone("tool-server-template");
      const box = row.querySelector("input");
      box.value = server.name;
      box.checked = this.chosen.includes(server.name);
      row.querySelector(".tool-server-name").textContent = server.name;
      row.querySelector(".tool-server-tools").textContent = server.error
        ? `unavailable: ${server.error}` : server.tools.map((t) => t.name).join(", ") || "no tools";
      return row;
    }));
    this.dialog.showModal();
  }
}
