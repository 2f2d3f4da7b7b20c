// Wiring only: build the pieces and connect the view's events to them.
import { setAccessToken } from "./api.js";
import { Controller } from "./controller.js";
import { loadSettings } from "./settings.js";
import { openStore } from "./store.js";
import { Threads } from "./threads.js";
import { Turns } from "./turns.js";
import { View } from "./view.js";

const view = new View();
const showError = (message) => view.notice(message, { kind: "error", sticky: true });

const { settings, error: settingsError } = loadSettings();
view.applyTheme(settings.theme); // first, so a dark page does not flash light while chats load
setAccessToken(settings.token);
if (settingsError) showError(settingsError);

let store = null;
try {
  store = await openStore();
} catch (err) {
  showError(err.message);
}

const threads = new Threads(store, showError);
const turns = new Turns({
  threads,
  view,
  getSettings: () => settings,
  onChange: () => controller.renderThreads(), // called on user actions, once all is built
  onNotice: (message) => view.notice(message, { kind: "warning", sticky: true }),
});
const controller = new Controller({ view, threads, turns, settings });
threads.onRemoteChange = (threadId) => controller.remoteChange(threadId);

view.on("send", (text) => turns.send(text));
view.on("stop", () => turns.stop());
view.on("regenerate", () => turns.regenerate());
view.on("retry", () => turns.regenerate());
view.on("editLast", (text) => turns.editLast(text));
view.on("messageText", (id) => controller.messageText(id));
view.on("newThread", () => controller.newThread());
view.on("selectThread", (id) => controller.selectThread(id));
view.on("renameThread", (id, title) => controller.renameThread(id, title));
view.on("deleteThread", (id) => controller.deleteThread(id));
view.on("exportThread", (id) => controller.exportThread(id));
view.on("exportAll", () => controller.exportAll());
view.on("importFile", (text) => controller.importFile(text));
view.on("search", (query) => controller.search(query));
view.on("openSettings", () => controller.openSettings());
view.on("saveSettings", (values) => controller.saveSettings(values));

await controller.start();
document.documentElement.dataset.ready = "true"; // for tests: the page is wired and loaded
