// One message on the page: a question, a saved reply (its thinking, tool call cards, text and
// figures), or a reply while it streams (ReplyView).
import { renderMarkdown } from "../markdown.js";
import { fileUrl } from "../http.js";
import { clone, html } from "./dom.js";

// A tool call's arguments: pretty JSON once the call is complete and they parse, the raw
// text so far otherwise (a fragment may end mid-JSON).
export function formatArguments(text, done) {
  if (!done) return text;
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

const LONG_RESULT = 400; // characters: a longer result starts folded

// What a call of a reply being written is doing: waiting for the user, running (a tool Rill runs:
// complete, no result yet), or not run because the user said no.
function callState(call) {
  if (call.asking) return ["is-asking", "waiting for your approval"];
  if (call.approved === false) return ["is-declined", "not run"];
  if (call.done && call.result === undefined) return ["is-running", "running"];
  return ["", ""];
}

// One card per tool call: its name and arguments, and the result of a tool Rill ran, all as text;
// `live` (the reply is being written): what it is doing, and the approval buttons when it asks.
function fillToolCall(card, call, live = false) {
  card.querySelector(".tool-call-name").textContent = call.name;
  card.querySelector(".tool-call-args code").textContent = formatArguments(call.arguments, call.done);
  card.classList.toggle("is-done", Boolean(call.done));
  const [state, words] = live ? callState(call) : ["", ""];
  const label = card.querySelector(".tool-call-state");
  label.className = `tool-call-state ${state}`.trim();
  label.textContent = words;
  card.classList.toggle("is-asking", state === "is-asking");
  const approval = card.querySelector(".tool-call-approval");
  approval.hidden = state !== "is-asking";
  for (const button of approval.querySelectorAll("button")) button.disabled = Boolean(call.answering);
  const result = card.querySelector(".tool-call-result");
  const hasResult = call.result !== undefined;
  if (hasResult && result.hidden) result.open = call.result.length <= LONG_RESULT;
  result.hidden = !hasResult;
  result.classList.toggle("is-error", Boolean(call.isError));
  result.querySelector("summary").textContent = call.isError ? "Error" : "Result";
  result.querySelector("code").textContent = call.result ?? "";
}

function toolCallCard(index) {
  const card = clone("tool-call-template");
  card.dataset.index = index;
  return card;
}

function formatMs(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

function formatStats(stats) {
  if (!stats) return "";
  const parts = [];
  if (stats.tokens != null) {
    const counted = stats.tokensCounted ? ["≈", " (counted by Rill)"] : ["", ""];
    parts.push(`${counted[0]}${stats.tokens} ${stats.tokens === 1 ? "token" : "tokens"}${counted[1]}`);
  }
  if (stats.ttftMs != null) parts.push(`${formatMs(stats.ttftMs)} to first token`);
  if (stats.tokensPerSecond != null) parts.push(`${stats.tokensPerSecond.toFixed(1)} tok/s`);
  if (stats.durationMs != null) parts.push(formatMs(stats.durationMs));
  return parts.join(" · ");
}

const isEmpty = (message) => !message.content && !message.reasoning && !message.toolCalls?.length;

// `branch`: {index, count} when the message has siblings (the arrows), else null. A message not
// yet on the server (`local`: being asked, or refused) has no actions.
export function messageItem(message, { branch = null, local = false } = {}) {
  const item = clone("message-template");
  const user = message.role === "user";
  item.dataset.id = message.id;
  item.classList.add(user ? "from-user" : "from-assistant");
  item.classList.toggle("is-local", local);
  item.querySelector(".author").textContent = user ? "You said:" : "Rill said:";
  item.querySelector("[data-action=edit]").hidden = !user;
  item.querySelector("[data-action=regenerate]").hidden = user;
  const branches = item.querySelector(".branches");
  branches.hidden = !branch;
  if (branch) {
    const what = user ? "question" : "reply";
    branches.querySelector(".branch-count").textContent = `${branch.index + 1}/${branch.count}`;
    branches.setAttribute("aria-label", `Version ${branch.index + 1} of ${branch.count} of this ${what}`);
    const [previous, next] = branches.querySelectorAll("button");
    previous.disabled = branch.index === 0;
    next.disabled = branch.index === branch.count - 1;
    previous.setAttribute("aria-label", `Previous version of this ${what}`);
    next.setAttribute("aria-label", `Next version of this ${what}`);
  }
  fillMessage(item, message);
  return item;
}

export function fillMessage(item, message) {
  item.classList.remove("is-waiting", "is-streaming", "is-stopped", "is-error");
  item.removeAttribute("aria-busy");
  const body = item.querySelector(".body");
  const stats = item.querySelector(".stats");
  fillExtras(item, message.role === "assistant" && message.status !== "error" ? message : {});
  fillFiles(item, message.files || []);
  if (message.role === "user") {
    body.textContent = message.content;
    stats.textContent = "";
    return;
  }
  if (message.status === "error") {
    item.classList.add("is-error");
    const box = clone("error-template");
    box.querySelector(".error-message").textContent = message.error?.message || "Something went wrong.";
    body.replaceChildren(box);
    stats.textContent = "";
    return;
  }
  if (message.content) {
    body.replaceChildren(html(renderMarkdown(message.content)));
  } else if (isEmpty(message)) {
    body.innerHTML = '<p class="muted">No text.</p>';
  } else {
    body.replaceChildren(); // thinking or tool calls only
  }
  item.classList.toggle("is-stopped", message.status === "stopped");
  fillStats(item, message);
}

// The files a message has: a chip with its name, an image as a small picture (its preview).
function fillFiles(item, files) {
  const list = item.querySelector(".files");
  list.hidden = !files.length;
  list.replaceChildren(...files.map((file) => fileChip(file, `/api/files/${encodeURIComponent(file.id)}/preview`)));
}

export function fileChip(file, previewPath) {
  const chip = document.createElement("li");
  chip.className = "file";
  chip.dataset.fileId = file.id;
  const name = document.createElement("span");
  name.textContent = file.name;
  if (file.type?.startsWith("image/")) {
    const picture = document.createElement("img");
    picture.alt = file.name;
    picture.className = "file-thumb";
    fileUrl(previewPath).then((url) => { if (url) picture.src = url; });
    chip.append(picture);
  }
  chip.append(name);
  return chip;
}

// A reply's thinking (folded) and its tool call cards, as they were saved.
function fillExtras(item, { reasoning = "", toolCalls = [] }) {
  const thinking = item.querySelector(".thinking");
  thinking.hidden = !reasoning;
  thinking.open = false;
  thinking.classList.remove("is-live");
  thinking.querySelector(".thinking-text").textContent = reasoning;
  const calls = item.querySelector(".tool-calls");
  calls.hidden = !toolCalls.length;
  calls.replaceChildren(...toolCalls.map((call, index) => {
    const card = toolCallCard(index);
    fillToolCall(card, call);
    return card;
  }));
}

function fillStats(item, message) {
  const stats = item.querySelector(".stats");
  stats.textContent = [message.status === "stopped" ? "Stopped" : "", formatStats(message.stats)].filter(Boolean).join(" · ");
  stats.title = message.model ? `Model: ${message.model}` : "";
}

// One reply while it streams: the typing indicator, the thinking, the growing Markdown, the
// tool call cards, the live rate. `list` keeps the conversation scrolled with it.
export class ReplyView {
  constructor(list, item) {
    this.list = list;
    this.item = item;
    this.body = item.querySelector(".body");
    this.stats = item.querySelector(".stats");
    this.thinking = item.querySelector(".thinking");
    this.calls = item.querySelector(".tool-calls");
    this.shownCalls = []; // by index, as last drawn
    this.live = document.createElement("div");
    this.live.className = "live";
    this.body.replaceChildren(this.live);
    // The thinking stays open while it goes on, and folds away once the answer or a tool call begins.
    this.answered = false;
    this.thinking.classList.add("is-live");
  }

  // Plain text, appended: the thinking so far is never parsed or drawn again.
  addReasoning(text) {
    this.item.classList.remove("is-waiting");
    if (this.thinking.hidden) {
      this.thinking.hidden = false;
      this.thinking.open = !this.answered;
    }
    this.thinking.querySelector(".thinking-text").append(text);
    this.list.followStream();
  }

  // Once only: a reader who opens the thinking again keeps it open.
  answering() {
    if (this.answered) return;
    this.answered = true;
    this.thinking.open = false;
    this.thinking.classList.remove("is-live");
  }

  // `settled`: HTML of blocks that are final, added once; `live`: HTML of the growing block.
  update(settled, live) {
    this.item.classList.remove("is-waiting");
    this.answering();
    if (settled) this.live.before(html(settled));
    this.live.replaceChildren(html(live));
    this.list.followStream();
  }

  // call: {name, arguments (the fragments so far), done}.
  showToolCall(index, call) {
    this.item.classList.remove("is-waiting");
    this.answering();
    let card = this.calls.querySelector(`[data-index="${index}"]`);
    if (!card) {
      card = toolCallCard(index);
      this.calls.append(card);
      this.calls.hidden = false;
    }
    this.shownCalls[index] = call;
    fillToolCall(card, call, true);
    this.list.followStream();
  }

  showRate(tokensPerSecond) {
    this.stats.textContent = tokensPerSecond == null ? "" : `${tokensPerSecond.toFixed(1)} tok/s`;
  }

  // The streamed content stays as it is; only the footer and the state change.
  finish(message) {
    if (message.status === "error" || isEmpty(message)) {
      this.list.update(message);
      return;
    }
    this.thinking.classList.remove("is-live");
    for (const card of this.calls.children) fillToolCall(card, this.shownCalls[card.dataset.index]); // none runs now
    this.item.classList.remove("is-waiting", "is-streaming");
    this.item.removeAttribute("aria-busy");
    this.item.classList.toggle("is-stopped", message.status === "stopped");
    fillStats(this.item, message);
    this.list.followStream();
  }
}
