// The page a share link opens: the snapshot of a branch, read-only, its replies rendered as the
// chat renders them (sanitized Markdown). With RILL_SHARE_PUBLIC off, the access token saved in
// this browser's Settings is sent.
import { ApiError, getJSON, setAccessToken } from "./http.js";
import { renderMarkdown } from "./markdown.js";
import { loadSettings } from "./settings.js";
import { html } from "./view/dom.js";
import { fileChip } from "./view/message.js";

const root = document.getElementById("shared");
const status = document.getElementById("shared-status");
const list = document.getElementById("shared-messages");
const token = encodeURIComponent(root.dataset.token);

// The files a message has, as the link shows them (kept while the link lives).
function filesOf(message, rows) {
  const ids = message.parts.filter((p) => p.type === "file").map((p) => p.file_id);
  const files = document.createElement("ul");
  files.className = "files";
  files.hidden = !ids.length;
  files.append(...ids.map((id) => fileChip(rows[id] || { id, name: "a file that was deleted" },
    `/api/shared/${token}/files/${encodeURIComponent(id)}/preview`)));
  return files;
}

function item(message, rows) {
  const li = document.createElement("li");
  li.className = `message ${message.role === "user" ? "from-user" : "from-assistant"}`;
  const author = document.createElement("p");
  author.className = "author";
  author.textContent = message.role === "user" ? "You said:" : "Rill said:";
  const body = document.createElement("div");
  body.className = "body";
  const text = message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
  if (message.role === "user") body.textContent = text;
  else body.replaceChildren(html(renderMarkdown(text)));
  li.append(author, filesOf(message, rows), body);
  return li;
}

setAccessToken(loadSettings().settings.token);
try {
  const shared = await getJSON(`/api/shared/${token}`);
  document.getElementById("shared-title").textContent = shared.title || "Shared chat";
  document.title = `${shared.title || "Shared chat"} · Rill`;
  list.replaceChildren(...shared.messages.map((message) => item(message, shared.files || {})));
  status.textContent = `Shared ${new Date(shared.shared_at).toLocaleString()}.`;
} catch (err) {
  status.textContent = err instanceof ApiError ? err.message : "This shared chat could not be loaded.";
}
document.documentElement.dataset.ready = "true";
