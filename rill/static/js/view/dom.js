// What every widget uses: finding and cloning nodes, inert HTML, the clipboard, downloads, and
// reporting what the user does (on/emit: the wiring in main.js listens).

export const byId = (id) => document.getElementById(id);

export function clone(templateId) {
  return byId(templateId).content.firstElementChild.cloneNode(true);
}

// A widget reports what the user does through on(name, handler); it decides nothing itself.
export class Widget {
  constructor() {
    this.handlers = {};
  }

  on(name, handler) {
    this.handlers[name] = handler;
  }

  emit(name, ...args) {
    return this.handlers[name]?.(...args);
  }
}

export function html(markup) {
  const template = document.createElement("template");
  template.innerHTML = markup;  // parsed inert: nothing in a template runs or loads
  decorateCode(template.content);
  return template.content;
}

// A header with the language and a copy button above each code block.
function decorateCode(root) {
  for (const pre of root.querySelectorAll("pre")) {
    const block = document.createElement("div");
    block.className = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const lang = document.createElement("span");
    lang.textContent = pre.dataset.lang || "text";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "code-copy";
    copy.dataset.action = "copy-code";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", `Copy ${lang.textContent} code`);
    head.append(lang, copy);
    pre.replaceWith(block);
    block.append(head, pre);
  }
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API outside secure contexts (plain http on a LAN): the old way still works.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

export function flashCopied(button) {
  button.classList.add("copied");
  const label = button.querySelector("use");
  if (label) label.setAttribute("href", "#i-check");
  else button.textContent = "Copied";
  setTimeout(() => {
    button.classList.remove("copied");
    if (label) label.setAttribute("href", "#i-copy");
    else button.textContent = "Copy";
  }, 1500);
}

// `data`: text (Markdown), or a value saved as JSON.
export function download(filename, data) {
  const blob = typeof data === "string" ? new Blob([data], { type: "text/markdown" })
    : new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function applyTheme(theme) {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
}
