// Hearing that the user's threads changed on the server (on any device, through any worker):
// Socket.IO's `threads_changed` when that is the transport, else the SSE change feed. Either
// way `onChange()` is called for each change and `onReach(true|false)` as the server is reached
// or lost (the page syncs on reconnect: it may have missed changes while away).
import { withAuth } from "./http.js";
import { readEvents } from "./sse.js";

const RETRY_MS = [500, 1000, 2000, 4000];
const STEADY_MS = 5000; // a feed that stayed up this long was fine: the next drop retries at once

// Follows the SSE feed until `signal` aborts, reconnecting with growing pauses while the server
// is away. `tell(what)`: "changed", "reached" or "lost".
async function follow(signal, tell) {
  for (let failures = 0; !signal.aborted; failures++) {
    let response = null;
    const opened = Date.now();
    try {
      // since=0: never ahead of the server (one that started afresh); the page's own revision
      // decides what a sync fetches.
      response = await fetch("/api/threads/changes?since=0", { headers: withAuth({ Accept: "text/event-stream" }), signal });
      if (response.ok) {
        tell("reached");
        for await (const event of readEvents(response.body, signal)) {
          if (event.type === "changed") tell("changed");
        }
      }
    } catch {
      // offline, or stopped
    }
    if (signal.aborted) return;
    if (!response || response.status >= 500) tell("lost"); // a refused token is not "offline"
    if (response?.ok && Date.now() - opened > STEADY_MS) failures = 0;
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS[Math.min(failures, RETRY_MS.length - 1)]));
  }
}

// The SSE feed. A browser allows only a few connections to one server, so one tab of this
// browser holds the feed and tells the others (where the browser can share: Web Locks and
// BroadcastChannel; otherwise each tab has its own). Returns stop().
export function watchFeed(onChange, onReach) {
  const controller = new AbortController();
  const { signal } = controller;
  const heard = (what) => (what === "changed" ? onChange() : onReach(what === "reached"));
  if (!globalThis.navigator?.locks || !globalThis.BroadcastChannel) {
    follow(signal, heard);
    return () => controller.abort();
  }
  const channel = new BroadcastChannel("rill-changes");
  channel.onmessage = (event) => heard(event.data);
  navigator.locks.request("rill-change-feed", { signal }, () => follow(signal, (what) => {
    heard(what);
    channel.postMessage(what);
  })).catch(() => {}); // stopped while waiting for the lock
  return () => {
    controller.abort();
    channel.close();
  };
}

// The same over the Socket.IO connection replies use. Returns stop().
export function watchSocket(transport, onChange, onReach) {
  const socket = transport.connection();
  const connected = () => onReach(true);
  const lost = () => onReach(false);
  socket.on("threads_changed", onChange);
  socket.on("connect", connected);
  socket.on("disconnect", lost);
  if (socket.connected) connected();
  return () => {
    socket.off("threads_changed", onChange);
    socket.off("connect", connected);
    socket.off("disconnect", lost);
  };
}
