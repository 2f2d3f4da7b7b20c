// The SSE wire format, read as it arrives: the parser and an async iterator over a response body.

// Server-Sent Events per the WHATWG HTML standard (9.2.6): lines end with CR, LF or CRLF;
// `data` lines join with "\n"; lines starting with ":" are comments; a blank line dispatches;
// an event still open when the stream ends is dropped. Feed it decoded text in any pieces.
export class SSEParser {
  constructor() {
    this.line = "";         // the unfinished line carried over from the last piece
    this.skipLF = false;    // the last piece ended with CR: a leading LF belongs to it
    this.data = "";
    this.type = "";
    this.lastEventId = "";
    this.comments = [];
  }

  push(text) {
    const events = [];
    if (this.skipLF && text.startsWith("\n")) text = text.slice(1);
    this.skipLF = false;
    const lines = /\r\n|\r|\n/g;
    let start = 0;
    let match;
    while ((match = lines.exec(text)) !== null) {
      const line = this.line + text.slice(start, match.index);
      this.line = "";
      start = lines.lastIndex;
      if (match[0] === "\r" && start === text.length) this.skipLF = true;
      const event = this.processLine(line);
      if (event) events.push(event);
    }
    this.line += text.slice(start);
    return events;
  }

  processLine(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) {
      this.comments.push(line.slice(1));
      return null;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data += value + "\n";
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    // `retry` only matters to EventSource's reconnection; other fields are ignored.
    return null;
  }

  dispatch() {
    const { data, type } = this;
    this.data = "";
    this.type = "";
    if (data === "") return null;
    return { type: type || "message", data: data.slice(0, -1), id: this.lastEventId };
  }
}

// The events of an SSE response body, as they arrive.
export async function* readEvents(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  const parser = new SSEParser();
  try {
    while (!signal?.aborted) {
      const { value, done } = await reader.read();
      if (done) {
        // Complete a character split across the last two reads; an unfinished event is dropped.
        yield* parser.push(decoder.decode());
        return;
      }
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
