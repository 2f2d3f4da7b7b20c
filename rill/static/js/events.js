// A turn's events: each kind by its name on Socket.IO, as the server's table has them
// (rill/chat/events.py; a test holds the two equal). Written as JSON.
export const EVENTS = {
  "start": "chat_start",
  "reasoning": "chat_reasoning",
  "token": "chat_token",
  "tool_call_start": "chat_tool_call_start",
  "tool_call_delta": "chat_tool_call_delta",
  "tool_call_end": "chat_tool_call_end",
  "tool_approval_request": "chat_tool_approval_request",
  "tool_approval": "chat_tool_approval",
  "tool_result": "chat_tool_result",
  "done": "chat_complete",
  "error": "chat_error"
};

// The kind of a Socket.IO event name, and what handlers.toolCall gets for each tool call event
// (asked, answered: a call waiting for the user's approval, and the answer; a result: what a tool
// Rill ran answered).
export const KIND_OF = Object.fromEntries(Object.entries(EVENTS).map(([kind, name]) => [name, kind]));
export const TOOL_CALL_KINDS = { tool_call_start: "start", tool_call_delta: "delta", tool_call_end: "end",
  tool_approval_request: "asked", tool_approval: "answered", tool_result: "result" };
