// The model picker's pulls: a name to pull from the Hugging Face hub, then each pull's progress
// bar with Cancel, and why a pull failed; fed by the server's model events. Emits pull(name) and
// cancel(id).
import { Widget, byId, clone } from "./dom.js";

const MB = 1e6;

function megabytes(bytes) {
  return bytes >= 1000 * MB ? `${(bytes / (1000 * MB)).toFixed(2)} GB` : `${(bytes / MB).toFixed(1)} MB`;
}

export class PullsView extends Widget {
  constructor() {
    super();
    this.name = byId("pull-name");
    this.status = byId("pull-status");
    this.list = byId("pulls");
    byId("pull-start").addEventListener("click", () => this.start());
    this.name.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault(); // not the dialog's Save
        this.start();
      }
    });
    this.list.addEventListener("click", (event) => {
      const button = event.target.closest("[data-action=cancel]");
      if (button) this.emit("cancel", button.closest(".pull-item").dataset.id);
    });
  }

  start() {
    const name = this.name.value.trim();
    if (!name) {
      this.say("Name a model: org/repo:QUANT for a GGUF repository, or org/repo.", true);
      return;
    }
    this.say("");
    this.emit("pull", name);
  }

  pulled() {
    this.name.value = "";
  }

  say(text, isError = false) {
    this.status.textContent = text;
    this.status.classList.toggle("is-error", isError);
  }

  // models: GET /api/models's body. Pulls in progress, then the ones that failed.
  show(models) {
    const all = (models.providers || []).flatMap((p) => p.models || []);
    const items = all.filter((m) => m.state === "pulling").map((model) => {
      const item = clone("pull-template");
      item.dataset.id = model.id;
      item.querySelector(".pull-model").textContent = model.id;
      const { done = 0, total = 0 } = model.progress || {};
      const bar = item.querySelector("progress");
      if (total) bar.value = done / total; // without a total: indeterminate until the file list is in
      bar.setAttribute("aria-label", `Pulling ${model.id}`);
      item.querySelector(".pull-figures").textContent = total ? `${megabytes(done)} of ${megabytes(total)}` : "starting…";
      return item;
    });
    for (const failed of models.failed || []) {
      const item = clone("pull-failed-template");
      item.querySelector(".pull-model").textContent = failed.id;
      item.querySelector(".pull-error").textContent = failed.error;
      items.push(item);
    }
    this.list.replaceChildren(...items);
  }
}
