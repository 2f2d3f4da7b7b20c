"""Tool calls and reasoning through every protocol, with the official SDKs, against the real
server (the scripted provider makes the calls: see tests/scripted.py `tools` and `think`); an
OpenAI-compatible upstream's calls and reasoning passed through (a second Rill as the upstream)."""
import json

import anthropic
import openai
import pytest
import requests

from tests.server import start_server, stop_server
from tests.sse import SSEStream
from tests.test_socketio import ChatClient

pytestmark = pytest.mark.slow

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]
ANTHROPIC_TOOLS = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                    "input_schema": t["function"]["parameters"]} for t in TOOLS]


@pytest.fixture(scope="module")
def server(servers):
    return servers("eventlet")


def accumulate(chunks) -> dict:
    """What an OpenAI SDK user does with a stream: join content, reasoning and calls by index."""
    out = {"content": "", "reasoning": "", "calls": {}, "finish_reason": None}
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            out["content"] += delta.content or ""
            out["reasoning"] += getattr(delta, "reasoning_content", None) or ""
            for call in delta.tool_calls or ():
                slot = out["calls"].setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                slot["id"] = call.id or slot["id"]
                slot["name"] += (call.function and call.function.name) or ""
                slot["arguments"] += (call.function and call.function.arguments) or ""
            out["finish_reason"] = choice.finish_reason or out["finish_reason"]
    return out


def test_openai_sdk_tool_call_deltas_accumulate_by_index_and_equal_the_non_streamed_reply(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    ask = dict(model="scripted/tools", messages=[{"role": "user", "content": "weather and time?"}], tools=TOOLS)
    streamed = accumulate(client.chat.completions.create(stream=True, **ask))
    assert streamed["finish_reason"] == "tool_calls" and streamed["reasoning"] == "I should call the tools."
    calls = [streamed["calls"][i] for i in sorted(streamed["calls"])]
    assert [c["name"] for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c["arguments"]) for c in calls] == [{"city": "Paris", "n": 0}, {"city": "Paris", "n": 1}]
    whole = client.chat.completions.create(**ask).choices[0]
    assert whole.finish_reason == "tool_calls" and whole.message.content is None
    assert whole.message.reasoning_content == streamed["reasoning"]
    assert [(c.id, c.function.name, c.function.arguments) for c in whole.message.tool_calls] == \
        [(c["id"], c["name"], c["arguments"]) for c in calls]


def test_openai_round_trip_call_result_answer(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    messages = [{"role": "user", "content": "weather?"}]
    first = client.chat.completions.create(model="scripted/tools", messages=messages, tools=TOOLS[:1])
    call = first.choices[0].message.tool_calls[0]
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    answer = accumulate(client.chat.completions.create(model="scripted/tools", messages=messages, tools=TOOLS[:1],
                                                       stream=True))
    assert answer["content"] == "The tool said: sunny, 21 C" and answer["finish_reason"] == "stop"


def test_anthropic_sdk_final_message_has_thinking_and_tool_use_and_a_round_trip(server):
    client = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)
    ask = dict(model="scripted/tools", max_tokens=100, tools=ANTHROPIC_TOOLS,
               messages=[{"role": "user", "content": "weather and time?"}])
    with client.messages.stream(**ask) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["thinking", "tool_use", "tool_use"]
    assert final.content[0].thinking == "I should call the tools."
    assert [(b.name, b.input) for b in final.content[1:]] == [("get_weather", {"city": "Paris", "n": 0}),
                                                              ("get_time", {"city": "Paris", "n": 1})]
    whole = client.messages.create(**ask)
    assert [b.model_dump() for b in whole.content] == [b.model_dump() for b in final.content]
    results = [{"type": "tool_result", "tool_use_id": b.id, "content": f"result {n}"}
               for n, b in enumerate(final.content[1:])]
    answer = client.messages.create(model="scripted/tools", max_tokens=100, tools=ANTHROPIC_TOOLS, messages=[
        *ask["messages"], {"role": "assistant", "content": [b.model_dump() for b in final.content]},
        {"role": "user", "content": results}])
    assert answer.stop_reason == "end_turn" and answer.content[0].text == "The tool said: result 0result 1"


def test_think_tags_split_across_pieces_become_reasoning_on_every_protocol(server):
    events = list(SSEStream(f"{server.url}/api/chat/stream", {"message": "2+2?", "model": "scripted/think"}))
    reasoning = "".join(e.json()["reasoning"] for e in events if e.type == "reasoning")
    answer = "".join(e.json()["token"] for e in events if e.type == "token")
    assert (reasoning, answer) == ("Two and two make four.", "The answer is 4.")
    assert [e.id for e in events] == [str(n) for n in range(len(events))]
    session = requests.get(f"{server.url}/api/chat/sessions/{events[0].json()['session_id']}", timeout=10).json()
    assert session["messages"][-1]["content"] == answer and session["messages"][-1]["reasoning"] == reasoning
    client = ChatClient(server.url)
    try:
        turn_id = client.ask(message="2+2?", model="scripted/think")["turn_id"]
        got = client.wait_end(turn_id)
        assert "".join(e[2]["reasoning"] for e in got if e[1] == "chat_reasoning") == reasoning
        calls = client.wait_end(client.ask(message="weather?", model="scripted/tools")["turn_id"])
        assert [e[1] for e in calls] == ["chat_start", "chat_reasoning", "chat_reasoning", "chat_tool_call_start",
                                         *["chat_tool_call_delta"] * 4, "chat_tool_call_end", "chat_complete"]
        assert calls[-1][2]["finish_reason"] == "tool_calls"
        assert json.loads("".join(e[2]["arguments"] for e in calls if e[1] == "chat_tool_call_delta")) == \
            {"city": "Paris", "n": 0}
    finally:
        client.close()
    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    whole = oa.chat.completions.create(model="scripted/think", messages=[{"role": "user", "content": "2+2?"}])
    assert whole.choices[0].message.content == answer and whole.choices[0].message.reasoning_content == reasoning


@pytest.mark.parametrize("body,words", [
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "no tool named 'nope'"),
    ({"tools": [], "tool_choice": "required"}, "needs tools"),
    ({"tools": [{"type": "function", "function": {"name": "x", "parameters": {"type": "array"}}}]}, "type object"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "name"),
    ({"messages": [{"role": "tool", "content": "r"}]}, "tool_call_id"),
    ({"model": "local/smollm2-135m-instruct"}, "chat template has no tool support"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": "}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]}, "must be a JSON object"),
])
def test_bad_tool_requests_are_clear_400s(server, body, words):
    request = {"model": "scripted/tools", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS, **body}
    r = requests.post(f"{server.url}/v1/chat/completions", json=request, timeout=30)
    assert r.status_code == 400 and words in r.json()["error"]["message"], r.text


def test_an_openai_compatible_upstreams_calls_and_reasoning_pass_through(server, tmp_path):
    front = start_server("eventlet", tmp_path, RILL_OPENAI_BASE_URL=f"{server.url}/v1", RILL_OPENAI_API_KEY="x")
    try:
        ask = dict(messages=[{"role": "user", "content": "weather and time?"}], tools=TOOLS, stream=True)
        direct = accumulate(openai.OpenAI(base_url=f"{server.url}/v1", api_key="x").chat.completions.create(
            model="scripted/tools", **ask))
        through = accumulate(openai.OpenAI(base_url=f"{front.url}/v1", api_key="x").chat.completions.create(
            model="openai/scripted/tools", **ask))
        assert through == direct and len(through["calls"]) == 2
    finally:
        stop_server(front)
