// The modal dialogs: a confirmation, Settings (with its usage section; emits save(values) when
// it is closed with Save) and a chat's share links.
import { Widget, byId, clone, copyText, flashCopied } from "./dom.js";
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

export class SettingsDialog extends Widget {
  // `opener`: the button that opens it, focused again when it closes.
  constructor(opener) {
    super();
    this.dialog = byId("settings");
    this.form = byId("settings-form").elements;
    this.usage = new UsageView(byId("usage"));
    this.form.temperature.addEventListener("input", () => this.showTemperature());
    this.dialog.addEventListener("close", () => {
      if (this.dialog.returnValue === "save") this.emit("save", this.read());
      opener.focus();
    });
  }

  open(settings, models) {
    const form = this.form;
    const select = form.model;
    const options = [new Option(models.default ? `Server default (${models.default})` : "Server default", "")];
    for (const provider of models.providers || []) {
      for (const model of provider.models || []) {
        const state = provider.available === false ? " (not configured)"
          : model.state && model.state !== "ready" ? ` (${model.state})` : "";
        const option = new Option(model.id + state, model.id);
        option.disabled = provider.available === false;
        options.push(option);
      }
    }
    if (settings.model && !options.some((o) => o.value === settings.model)) {
      options.push(new Option(`${settings.model} (not on this server)`, settings.model));
    }
    select.replaceChildren(...options);
    select.value = settings.model;
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
