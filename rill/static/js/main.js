// Wiring only: build the widgets and the pieces, and connect what the user does to them.
import { Attachments } from "./attachments.js";
import { Controller } from "./controller.js";
import { setAccessToken } from "./http.js";
import { loadSettings } from "./settings.js";
import { MemoryStore, openStore } from "./store.js";
import { Threads } from "./threads.js";
import { Turns } from "./turns.js";
import { Composer } from "./view/composer.js";
import { ConfirmDialog, SettingsDialog, ShareDialog } from "./view/dialogs.js";
import { applyTheme } from "./view/dom.js";
import { Header } from "./view/header.js";
import { MessageList } from "./view/messages.js";
import { Notices } from "./view/notices.js";
import { Sidebar } from "./view/sidebar.js";
import { ToolsPicker } from "./view/tools.js";

const notices = new Notices();
const { settings, error: settingsError } = loadSettings();
applyTheme(settings.theme); // first, so a dark page does not flash light while chats load
setAccessToken(settings.token);
if (settingsError) notices.error(settingsError);

let store;
try {
  store = await openStore();
} catch (err) {
  notices.error(err.message);
  store = new MemoryStore(); // chats work, for this page only
}

const confirm = new ConfirmDialog();
const header = new Header();
const widgets = {
  notices, header, confirm, sidebar: new Sidebar((text) => confirm.ask(text)), messages: new MessageList(),
  composer: new Composer(), settingsDialog: new SettingsDialog(header.settings), shareDialog: new ShareDialog(),
  tools: new ToolsPicker(),
};
const threads = new Threads(store, (message) => notices.error(message));
const turns = new Turns({
  threads,
  widgets,
  getSettings: () => settings,
  onStart: (threadId) => controller.started(threadId), // called once a reply runs, when all is built
  onEnd: (threadId) => controller.replyEnded(threadId),
});
const controller = new Controller({ widgets, threads, turns, settings });

const { sidebar, messages, composer, shareDialog } = widgets;
const maxUpload = Number(document.querySelector("meta[name=rill-max-upload-bytes]").content);
const attachments = new Attachments(maxUpload, () => composer.showAttachments(attachments.items));
composer.on("attach", (files) => attachments.add(files, composer.takesImages));
composer.on("detach", (key) => attachments.remove(key));
composer.on("send", (text) => {
  const why = attachments.holdsBack();
  if (why) {
    notices.notice(why);
    return false;
  }
  return !turns.busy && turns.send(text, attachments.take());
});
composer.on("stop", () => turns.stop());
messages.on("regenerate", (id) => controller.regenerate(id));
messages.on("retry", (id) => turns.retry(id));
messages.on("approveCall", (index, approved) => turns.approve(index, approved));
messages.on("save", (id, text) => controller.saveEdit(id, text));
messages.on("rerun", (id, text) => turns.rerun(id, text));
messages.on("branch", (id, step) => controller.branch(id, step));
messages.on("deleteBranch", (id) => controller.deleteBranch(id));
messages.on("fork", (id) => controller.fork(id));
messages.on("older", () => controller.showOlder());
messages.on("messageText", (id) => controller.messageText(id));
sidebar.on("newThread", () => controller.newThread());
sidebar.on("selectThread", (id) => controller.selectThread(id));
sidebar.on("openHit", (threadId, messageId) => controller.openHit(threadId, messageId));
sidebar.on("shareThread", (id) => controller.shareThread(id));
shareDialog.on("create", () => controller.createShare());
shareDialog.on("revoke", (token) => controller.revokeShare(token));
sidebar.on("renameThread", (id, title) => controller.renameThread(id, title));
sidebar.on("deleteThread", (id) => controller.deleteThread(id));
sidebar.on("exportThread", (id) => controller.exportThread(id));
sidebar.on("exportAll", () => controller.exportAll());
sidebar.on("importFile", (text) => controller.importFile(text));
sidebar.on("search", (query) => controller.search(query));
header.on("openSettings", () => controller.openSettings());
widgets.settingsDialog.on("save", (values) => controller.saveSettings(values));
widgets.tools.on("choose", (names) => controller.chooseTools(names));
widgets.settingsDialog.on("closed", () => controller.stopFollowingModels());
widgets.settingsDialog.pulls.on("pull", (name) => controller.pullModel(name));
widgets.settingsDialog.pulls.on("cancel", (id) => controller.cancelPull(id));
// Esc closes the chat drawer if it is open, else stops a running reply (not while a dialog is
// open, or when the key was used already: an edit or a rename box takes it itself).
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented || document.querySelector("dialog[open]")) return;
  if (sidebar.isOpen()) sidebar.close();
  else if (turns.busy) turns.stop();
});

await controller.start();
document.documentElement.dataset.ready = "true"; // for tests: the page is wired and loaded
