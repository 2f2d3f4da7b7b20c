"""POST /v1/responses (rill/transports/responses_api.py): the Responses API as one more encoding of a
turn. The fast tests use the scripted provider in process and check every event and response
against the openai SDK's own models of them; the slow ones drive the real model with the SDK."""
import json
import time

import openai
import pytest
from openai.types.responses import Response, ResponseItemList, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.server import start_server, stop_server
from tests.sse import decode_all

STREAM_EVENT = TypeAdapter(ResponseStreamEvent)
TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def create(client, **body):
    return client.post("/v1/responses", json={"model": "scripted/echo", **body})


def streamed(client, **body) -> list[dict]:
    """The stream's events, each checked against the SDK's model of its type."""
    reply = create(client, stream=True, **body)
    assert reply.status_code == 200 and reply.mimetype == "text/event-stream", reply.data
    events = []
    for event in decode_all(reply.data):
        data = json.loads(event.data)
        assert event.type == data["type"]
        STREAM_EVENT.validate_python(data)  # a field missing or of the wrong type raises
        events.append(data)
    return events


def test_a_text_reply_streams_in_the_documented_order_and_equals_the_whole_response(client):
    events = streamed(client, input="rivers run to the sea")
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 5, "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text.split() == ["rivers", "run", "to", "the", "sea"]  # echo: word by word
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "completed" and final.output_text == text and final.usage.output_tokens == 5

    whole = create(client, input="rivers run to the sea")
    assert whole.status_code == 200
    response = Response.model_validate(whole.json)
    assert response.output_text == text and response.object == "response" and response.id.startswith("resp_")
    assert [item.type for item in response.output] == ["message"]


def test_instructions_and_input_items_make_the_conversation(client):
    response = create(client, model="scripted/history", instructions="Be brief.", input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is sunny."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "And "}, {"type": "input_text", "text": "Lyon?"}]},
    ], tools=[TOOL]).json
    assert response["output"][0]["content"][0]["text"] == (
        "system: Be brief. | user: Weather in Paris? | assistant:  | tool: sunny | assistant: It is sunny. | "
        "user: And \n\nLyon? | ")  # text parts joined as /v1/chat/completions joins them


def test_a_function_call_streams_as_a_function_call_item_then_its_output_continues(client):
    events = streamed(client, model="scripted/tools", input="Weather in Paris?", tools=[TOOL])
    kinds = [e["type"] for e in events]
    assert kinds[2:5] == ["response.output_item.added", "response.content_part.added", "response.reasoning_text.delta"]
    assert "response.function_call_arguments.delta" in kinds
    final = Response.model_validate(events[-1]["response"])
    assert [item.type for item in final.output] == ["reasoning", "function_call"]
    call = final.output[1]
    assert (call.name, json.loads(call.arguments), call.status) == ("get_weather", {"city": "Paris", "n": 0}, "completed")
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == call.arguments and done["item_id"] == call.id

    answer = create(client, model="scripted/tools", tools=[TOOL], input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": "get_weather", "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 C"}]).json
    assert Response.model_validate(answer).output_text == "The tool said: 18 C"


def test_a_failure_mid_stream_is_response_failed(client):
    events = streamed(client, model="scripted/fail", input="x")
    assert events[-1]["type"] == "response.failed" and events[-1]["response"]["error"]["message"]
    assert events[-2]["type"] == "response.output_item.done" and events[-2]["item"]["status"] == "incomplete"


@pytest.mark.parametrize("body,words", [
    ({"background": True, "store": False}, "background: a background response must be stored"),
    ({"tools": [{"type": "web_search"}]}, "a tool of type 'web_search' is a built-in tool Rill does not run"),
    ({"text": {"format": {"type": "grammar", "grammar": "start: x"}}}, "text.format"),
    ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.json_schema.name"),
    ({"reasoning": {"effort": "high"}}, "reasoning"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0"),
    ({"tool_choice": "required"}, "tool_choice: 'required' needs tools"),
    ({"temperature": 3}, "temperature"),
])
def test_what_rill_does_not_do_is_a_400_that_names_it(client, body, words):
    reply = create(client, **{"input": "hi", **body})
    assert reply.status_code == 400, reply.data
    error = reply.json["error"]
    assert error["type"] == "invalid_request_error" and words in error["message"], error


def test_a_stored_response_is_read_back_continued_and_deleted(client):
    first = create(client, model="scripted/history", input="My name is Ada.").json
    assert first["store"] is True and client.get(f"/v1/responses/{first['id']}").json == first
    second = create(client, model="scripted/history", input="I like rivers.", previous_response_id=first["id"]).json
    third = create(client, model="scripted/history", input="What is my name?", instructions="Answer.",
                   previous_response_id=second["id"]).json
    assert third["previous_response_id"] == second["id"]
    assert Response.model_validate(third).output_text == (
        "system: Answer. | user: My name is Ada. | assistant: user: My name is Ada. |  | user: I like rivers. | "
        "assistant: user: My name is Ada. | assistant: user: My name is Ada. |  | user: I like rivers. |  | "
        "user: What is my name? | ")  # each earlier input and output, in order; only this one's instructions
    assert client.delete(f"/v1/responses/{second['id']}").json == {"id": second["id"], "object": "response",
                                                                   "deleted": True}
    gone = client.get(f"/v1/responses/{second['id']}")
    assert gone.status_code == 404 and gone.json["error"]["code"] == "response_not_found"
    refused = create(client, input="and?", previous_response_id=second["id"])
    assert refused.status_code == 404 and "previous_response_id: no response" in refused.json["error"]["message"]
    unstored = create(client, input="hi", store=False).json
    assert client.get(f"/v1/responses/{unstored['id']}").status_code == 404


def test_a_stored_responses_input_items_are_listed_as_the_api_lists_them(client):
    made = create(client, model="scripted/history", input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Thanks."}]}]).json
    listed = client.get(f"/v1/responses/{made['id']}/input_items").json
    page = ResponseItemList.model_validate(listed)
    assert [item.type for item in page.data] == ["message", "message", "function_call_output", "function_call",
                                                 "message"]  # newest first, as the API's default order
    assert page.data[-1].content[0].text == "Weather in Paris?" and not page.has_more
    first_two = client.get(f"/v1/responses/{made['id']}/input_items?order=asc&limit=2").json
    assert [i["type"] for i in first_two["data"]] == ["message", "function_call"] and first_two["has_more"]
    rest = client.get(f"/v1/responses/{made['id']}/input_items?order=asc&after={first_two['last_id']}").json
    assert [i["type"] for i in rest["data"]] == ["function_call_output", "message", "message"]
    assert client.get(f"/v1/responses/{made['id']}/input_items?limit=0").status_code == 400


def test_a_stream_is_resumed_after_any_event_with_nothing_lost_or_doubled(client):
    events = streamed(client, model="scripted/long", input="long 30")
    response_id = events[0]["response"]["id"]
    time.sleep(1.1)  # encoded again later, the same to the second (completed_at too)
    again = client.get(f"/v1/responses/{response_id}?stream=true&starting_after=20")
    resumed = [json.loads(e.data) for e in decode_all(again.data)]
    assert resumed == events[21:]  # the same events, the same sequence numbers
    assert client.get(f"/v1/responses/{response_id}?stream=yes").status_code == 400


def test_a_background_response_runs_without_a_reader_and_is_cancelled(client):
    started = create(client, model="scripted/hold", input="wait", background=True)
    assert started.status_code == 200 and started.json["status"] == "in_progress" and started.json["background"]
    response_id = started.json["id"]
    assert client.get(f"/v1/responses/{response_id}").json["status"] == "in_progress"
    cancelled = client.post(f"/v1/responses/{response_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert client.get(f"/v1/responses/{response_id}").json["status"] == "cancelled"
    foreground = create(client, input="hi").json
    refused = client.post(f"/v1/responses/{foreground['id']}/cancel")
    assert refused.status_code == 400 and "background" in refused.json["error"]["message"]


@pytest.mark.slow
def test_the_openai_sdk_streams_the_real_models_greedy_text_equal_to_the_whole_response(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    ask = dict(model="local/smollm2-135m-instruct", input="Name a river in Africa.", instructions="Be brief.",
               max_output_tokens=24, temperature=0)
    whole = client.responses.create(**ask)
    events = list(client.responses.create(**ask, stream=True))
    kinds, final = [event.type for event in events], events[-1].response  # completed, or incomplete at the cap
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == final.output_text == whole.output_text and text.strip() and final.status == whole.status
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed" if whole.status == "completed" else "response.incomplete"]
    assert whole.usage.input_tokens > 10 and whole.usage.output_tokens == final.usage.output_tokens


@pytest.mark.slow
def test_a_reply_cut_by_max_output_tokens_is_incomplete(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    cut = client.responses.create(model="local/smollm2-135m-instruct", input="Tell me a long story.",
                                  max_output_tokens=3, temperature=0)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    assert cut.usage.output_tokens == 3 and cut.output[0].status == "completed"


@pytest.mark.slow
def test_a_background_response_of_the_real_model_is_cancelled_within_a_second(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    # greedy: a sampled story once ended in under half a second (CI, stop 47)
    started = client.responses.create(model="local/smollm2-135m-instruct", input="Write a very long story.",
                                      max_output_tokens=2000, temperature=0, background=True)
    time.sleep(0.5)  # writing by now
    asked = time.monotonic()
    cancelled = client.responses.cancel(started.id)
    assert cancelled.status == "cancelled" and time.monotonic() - asked < 1
    assert 0 < cancelled.usage.output_tokens < 2000 and cancelled.output_text
    assert client.responses.retrieve(started.id).status == "cancelled"


@pytest.mark.slow
def test_a_chain_of_three_recalls_the_first_turn_across_a_restart(tmp_path):
    data = {"RILL_DATA_DIR": tmp_path / "data"}
    srv = start_server("eventlet", tmp_path, **data)
    try:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        first = client.responses.create(model="scripted/history", input="My name is Ada.")
        second = client.responses.create(model="scripted/history", input="I like rivers.",
                                         previous_response_id=first.id)
    finally:
        stop_server(srv)
    srv = start_server("eventlet", tmp_path, **data)  # a new process: only the database remembers
    try:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        assert client.responses.retrieve(first.id).output_text == first.output_text
        third = client.responses.create(model="scripted/history", input="What is my name?",
                                        previous_response_id=second.id)
        assert third.output_text.startswith("user: My name is Ada. | ") and "user: I like rivers." in third.output_text
    finally:
        stop_server(srv)
