// The modal dialogs: a confirmation, Settings (with the model picker's pulls and its usage
// section; emits save(values) when it is closed with Save, and closed() either way) and a chat's
// share links.
import { Widget, byId, clone, copyText, flashCopied } from "./dom.js";
import { PullsView } from "./pulls.js";
import { UsageView } from "./usage.js";

export class ConfirmDialog {
  constructor() {
    this.dialog = byId("confirm");
    this.text = byId("confirm-text");
  }

  // A promise of whether the user agreed.
  ask(text) {
    this.text.textContent = text;
    this.dialog.returnValue = "";
    this.dialog.showModal();
    return new Promise((resolve) => {
      this.dialog.addEventListener("close", () => resolve(this.dialog.returnValue === "ok"), { once: true });
    });
  }
}

// A model as the picker lists it: its id, what it can do and its size, or what it is doing.
export function modelLabel(model, provider = {}) {
  if (provider.available === false) return `${model.id} (not configured)`;
  const size = model.size_bytes >= 1e9 ? `${(model.size_bytes / 1e9).toFixed(1)} GB` : model.size_bytes ? `${Math.round(model.size_bytes / 1e6)} MB` : "";
  if (model.state === "unloaded") return `${model.id}${size && ` · ${size}`} (loads when used)`;
  if (model.state && model.state !== "ready") return `${model.id} (${model.state})`;
  const can = [];
  if (model.context_tokens) can.push(`${Math.round(model.context_tokens / 1024)}k context`);
  if (model.tools) can.push("tools");
  if (model.input_modalities?.includes("image")) can.push("vision");
  if (model.reasoning) can.push("reasoning");
  if (size) can.push(size);
  return can.length ? `${model.id} · ${can.join(" · ")}` : model.id;
}

export class SettingsDialog extends Widget {
  // `opener`: the button that opens it, focused again when it closes.
  constructor(opener) {
    super();
    this.dialog = byId("settings");
    this.form = byId("settings-form").elements;
    this.usage = new UsageView(byId("usage"));
    this.pulls = new PullsView();
    this.form.temperature.addEventListener("input", () => this.showTemperature());
    this.dialog.addEventListener("close", () => {
      if (this.dialog.returnValue === "save") this.emit("save", this.read());
      this.emit("closed");
      opener.focus();
    });
  }

  open(settings, models) {
    const form = this.form;
    this.chosen = settings.model;
    this.showModels(models);
    this.pulls.say("");
    form.stream.checked = settings.stream;
    form.transport.value = settings.transport;
    form.system.value = settings.system;
    form.temperature.value = settings.temperature;
    form.maxTokens.value = settings.maxTokens;
    form.theme.value = settings.theme;
    form.token.value = settings.token;
    this.showTemperature();
    this.dialog.returnValue = "";
    this.dialog.showModal();
  }

  // The picker's models with what each can do, kept up to date while the dialog is open (a pull's
  // progress, a model that became ready) without losing the user's choice.
  showModels(models) {
    const select = this.form.model;
    const chosen = select.options.length ? select.value : this.chosen;
    const options = [new Option(models.default ? `Server default (${models.default})` : "Server default", "")];
    for (const provider of models.providers || []) {
      for (const model of provider.models || []) {
        const option = new Option(modelLabel(model, provider), model.id);
        option.disabled = provider.available === false || model.state === "pulling";
        options.push(option);
      }
    }
    if (chosen && !options.some((o) => o.value === chosen)) {
      options.push(new Option(`${chosen} (not on this server)`, chosen));
    }
    select.replaceChildren(...options);
    select.value = chosen;
    this.pulls.show(models);
  }

  showTemperature() {
    this.form.temperatureValue.value = Number(this.form.temperature.value).toFixed(2);
  }

  read() {
    const form = this.form;
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
}

// The share links of one chat: each can be copied or revoked; New link makes another. Emits
// create() and revoke(token).
export class ShareDialog extends Widget {
  constructor() {
    super();
    this.dialog = byId("share");
    this.title = byId("share-thread");
    this.links = byId("share-links");
    this.status = byId("share-status");
    byId("share-create").addEventListener("click", () => this.emit("create"));
    this.links.addEventListener("click", async (event) => {
      const button = event.target.closest("[data-action]");
      if (!button) return;
      const item = button.closest(".share-link");
      if (button.dataset.action === "revoke") this.emit("revoke", item.dataset.token);
      else if (await copyText(item.querySelector("input").value)) flashCopied(button);
    });
  }

  open(title) {
    this.title.textContent = title;
    this.show([]);
    this.say("Loading…");
    this.dialog.showModal();
  }

  // links: [{token, url}], oldest first.
  show(links) {
    this.links.replaceChildren(...links.map(({ token, url }) => {
      const item = clone("share-link-template");
      item.dataset.token = token;
      item.querySelector("input").value = url;
      return item;
    }));
    this.say(links.length ? "" : "No links yet: New link makes one.");
  }

  say(text) {
    this.status.textContent = text;
  }
}
