// Notices above the conversation, and announcements for screen readers.
import { byId } from "./dom.js";

const NOTICE_MS = 8000;

export class Notices {
  constructor() {
    this.box = byId("notices");
    this.status = byId("status");
    this.offlineBanner = byId("offline");
  }

  // The banner that says the server cannot be reached (the chats shown are this browser's copy).
  offline(away) {
    if (this.offlineBanner.hidden === !away) return;
    this.offlineBanner.hidden = !away;
    this.announce(away ? "The server cannot be reached." : "Connected to the server again.");
  }

  // kind: info | warning | error. Sticky notices stay until closed.
  notice(text, { kind = "info", sticky = false } = {}) {
    const shown = [...this.box.children].some((n) => n.firstChild.textContent === text);
    if (shown) return; // a failing store fails every write: say it once
    const box = document.createElement("div");
    box.className = `notice ${kind}`;
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    const message = document.createElement("span");
    message.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "icon-button tiny";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => box.remove());
    box.append(message, close);
    this.box.append(box);
    if (!sticky) setTimeout(() => box.remove(), NOTICE_MS);
  }

  error(text) {
    this.notice(text, { kind: "error", sticky: true });
  }

  // Said once by screen readers; never called per token.
  announce(text) {
    this.status.textContent = "";
    setTimeout(() => { this.status.textContent = text; }, 50); // a change, even for the same words
  }
}
