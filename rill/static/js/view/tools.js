// The chat's tools: the composer's Tools button (shown when the server has MCP servers; marked
// when the chat uses some) and its dialog: a checkbox per server (all its tools, also those it
// gains later) and one per tool (that tool alone). Emits choose(entries) when the choice changes:
// `mcp_servers` entries, a server's name or a tool's id (`server/tool`).
import { Widget, byId, clone } from "./dom.js";

const serverOf = (entry) => entry.split("/")[0];

export class ToolsPicker extends Widget {
  constructor() {
    super();
    this.button = byId("tools");
    this.dialog = byId("tools-dialog");
    this.list = byId("tools-list");
    this.servers = [];
    this.chosen = [];
    this.button.addEventListener("click", () => this.open());
    this.list.addEventListener("change", (event) => {
      const row = event.target.closest(".tool-server-row");
      const tools = [...row.querySelectorAll(".tool-choice input")];
      if (event.target.matches(".tool-server input")) tools.forEach((box) => { box.checked = event.target.checked; });
      else this.showServerBox(row);
      this.chosen = [...this.list.querySelectorAll(".tool-server-row")].flatMap((r) => this.entriesOf(r));
      this.showChosen();
      this.emit("choose", this.chosen);
    });
  }

  // servers: GET /api/mcp's list; none: no button.
  setServers(servers) {
    this.servers = servers;
    this.button.hidden = !servers.length;
  }

  // The open chat's entries (a new chat's: none, until chosen).
  show(chosen) {
    this.chosen = chosen.filter((entry) => this.servers.some((s) => s.name === serverOf(entry)));
    this.showChosen();
  }

  showChosen() {
    const on = this.chosen.length > 0;
    this.button.classList.toggle("is-on", on);
    this.button.setAttribute("aria-pressed", String(on));
    this.button.title = on ? `Tools: ${this.chosen.join(", ")}` : "Tools this chat may run (none)";
  }

  // A server's row: its name when all its tools are ticked, else the ids of those that are.
  entriesOf(row) {
    const server = row.querySelector(".tool-server input");
    const tools = [...row.querySelectorAll(".tool-choice input")];
    if (server.checked && tools.every((box) => box.checked)) return [server.value];
    return tools.filter((box) => box.checked).map((box) => box.value);
  }

  // Ticked when all its tools are, half when some are.
  showServerBox(row) {
    const tools = [...row.querySelectorAll(".tool-choice input")];
    const ticked = tools.filter((box) => box.checked).length;
    const server = row.querySelector(".tool-server input");
    server.checked = ticked > 0 && ticked === tools.length;
    server.indeterminate = ticked > 0 && ticked < tools.length;
  }

  open() {
    this.list.replaceChildren(...this.servers.map((server) => {
      const row = clone("tool-server-template");
      const box = row.querySelector(".tool-server input");
      box.value = server.name;
      box.checked = this.chosen.includes(server.name);
      row.querySelector(".tool-server-name").textContent = server.name;
      row.querySelector(".tool-server-note").textContent = server.error ? `unavailable: ${server.error}`
        : [server.tools.length ? "" : "no tools", server.ask_first ? "asks you before each call" : ""].filter(Boolean).join(" · ");
      row.querySelector(".tool-choices").replaceChildren(...(server.tools || []).map((tool) => {
        const choice = clone("tool-choice-template");
        const toolBox = choice.querySelector("input");
        toolBox.value = tool.id;
        toolBox.checked = box.checked || this.chosen.includes(tool.id);
        choice.querySelector(".tool-choice-name").textContent = tool.id.slice(server.name.length + 1);
        choice.querySelector("label").title = tool.description || "";
        return choice;
      }));
      if (!box.checked) this.showServerBox(row);
      return row;
    }));
    this.dialog.showModal();
  }
}
