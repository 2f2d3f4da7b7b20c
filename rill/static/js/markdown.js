// Markdown to safe HTML. Model output is untrusted: raw HTML in it is shown as text, every
// fragment is sanitized, links keep only http, https and mailto targets, and images become
// links (an image loads by itself, which can leak what the page shows to whoever hosts it).
import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.js";
import hljs from "../vendor/highlight.min.js";

const SAFE_URL = /^(?:https?|mailto):/i;

const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "button", "textarea", "select", "img", "picture", "video", "audio", "iframe"],
  FORBID_ATTR: ["style", "id", "name"], // no inline styles, no ids that could clash with the page's
  ALLOWED_URI_REGEXP: SAFE_URL,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName !== "A") return;
  if (SAFE_URL.test((node.getAttribute("href") || "").trim())) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  } else {
    node.removeAttribute("href");
  }
});

export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function highlight(text, lang) {
  const language = (lang || "").trim().split(/\s/)[0].toLowerCase();
  const known = language && hljs.getLanguage(language) ? language : "";
  const html = known ? hljs.highlight(text, { language: known, ignoreIllegals: true }).value : escapeHtml(text);
  const label = language ? ` data-lang="${escapeHtml(language)}"` : "";
  return `<pre${label}><code class="hljs${known ? ` language-${known}` : ""}">${html}</code></pre>\n`;
}

const marked = new Marked({
  gfm: true,
  renderer: {
    html: ({ text }) => escapeHtml(text),
    code: ({ text, lang }) => highlight(text, lang),
    image: ({ href, text }) => `<a href="${escapeHtml(href || "")}">${escapeHtml(text || href || "image")}</a>`,
  },
});

const sanitize = (html) => DOMPurify.sanitize(html, PURIFY);

export function renderMarkdown(text) {
  return sanitize(marked.parse(text));
}

// Markdown that grows while it is shown. Blocks before the last one are final: each is
// parsed, sanitized and handed out once. Only the last block is parsed again on each render,
// so the work per render does not grow with the length of the reply.
export class StreamingMarkdown {
  constructor() {
    this.final = [];        // the source of the blocks already handed out as final
    this.tail = "";         // the rest, with line endings made LF as marked's lexer would
    this.pendingCR = false; // a CR that ended the last piece: its LF may come with the next
  }

  append(text) {
    if (this.pendingCR) text = "\r" + text;
    this.pendingCR = text.endsWith("\r");
    if (this.pendingCR) text = text.slice(0, -1);
    this.tail += text.replace(/\r\n?/g, "\n");
  }

  get text() {
    return this.final.join("") + this.tail + (this.pendingCR ? "\n" : "");
  }

  // {settled: HTML of the blocks that became final since the last call (append it once),
  //  live: HTML of the rest (replace the previous live HTML with it)}.
  render() {
    const tokens = marked.lexer(this.tail);
    let last = tokens.length - 1;
    while (last > 0 && tokens[last].type === "space") last--;
    let settled = "";
    if (last > 0) {
      const done = tokens.slice(0, last);
      const raw = done.map((t) => t.raw).join("");
      if (this.tail.startsWith(raw)) { // marked keeps `raw` exact; if that ever changes, settle nothing
        settled = sanitize(marked.parser(done));
        this.final.push(raw);
        this.tail = this.tail.slice(raw.length);
        tokens.splice(0, last);
      }
    }
    return { settled, live: sanitize(marked.parser(tokens)) };
  }
}
