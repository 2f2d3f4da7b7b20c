// Hearing that the user's threads changed on the server (on any device, through any worker):
// Socket.IO's `threads_changed` when that is the transport, else the SSE change feed. Either
// way `onChange()` is called for each change and `onReach(true|false)` as the server is reached
// or lost (the page syncs on reconnect: it may have missed changes while away).
import { withAuth } from "./http.js";
import { readEvents } from "./sse.js";

const RETRY_MS = [500, 1000, 2000, 4000];

// The SSE feed, reconnected with growing pauses while the server is away. Returns stop().
export function watchFeed(onChange, onReach) {
  const controller = new AbortController();
  const { signal } = controller;
  (async () => {
    for (let failures = 0; !signal.aborted; failures++) {
      let response = null;
      try {
        // since=0: never ahead of the server (one that started afresh); the page's own revision
        // decides what a sync fetches.
        response = await fetch("/api/threads/changes?since=0", { headers: withAuth({ Accept: "text/event-stream" }), signal });
        if (response.ok) {
          failures = 0;
          onReach(true);
          for await (const event of readEvents(response.body, signal)) if (event.type === "changed") onChange();
        }
      } catch {
        // offline, or stopped
      }
      if (signal.aborted) return;
      if (!response || response.status >= 500) onReach(false); // a refused token is not "offline"
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS[Math.min(failures, RETRY_MS.length - 1)]));
    }
  })();
  return () => controller.abort();
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
