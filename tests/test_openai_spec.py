"""Rill's OpenAI-compatible objects and events against OpenAI's published OpenAPI document (the
component schemas they use, vendored in tests/fixtures/openai-openapi.json): every streamed
Responses event, every final response, chat completions and their chunks, and embeddings."""
import json
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from rill.chat.events import StreamEvent
from rill.transports.openai_api import ChunkEncoder
from tests.sse import decode_all
from tests.test_responses_api import TOOL

SPEC = Path(__file__).with_name("fixtures") / "openai-openapi.json"


def nullable(schema):
    """OpenAPI 3.0's `nullable: true`, which the document still uses in places, as JSON Schema says it."""
    if isinstance(schema, list):
        return [nullable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: nullable(value) for key, value in schema.items()}
    if schema.pop("nullable", False):
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


@cache
def components() -> dict:
    return nullable(json.loads(SPEC.read_text())["components"])


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components()})


@cache
def event_schemas() -> dict[str, str]:
    """Each streamed event's own schema by its type (the union's errors would name none)."""
    schemas = components()["schemas"]
    out = {}
    for option in schemas["ResponseStreamEvent"]["anyOf"]:
        name = option["$ref"].rsplit("/", 1)[1]
        kind = schemas[name]["properties"]["type"]
        out[kind.get("const") or kind["enum"][0]] = name
    return out


def assert_valid(obj: dict, name: str) -> None:
    errors = sorted(validator(name).iter_errors(obj), key=lambda e: len(list(e.absolute_path)))
    assert not errors, f"{name}: {errors[0].message} at {list(errors[0].absolute_path)}\n{json.dumps(obj)[:2000]}"


def events(reply) -> list[dict]:
    assert reply.status_code == 200, reply.data
    return [json.loads(e.data) for e in decode_all(reply.data) if e.data and e.data != "[DONE]"]


RESPONSES = [  # what the scripted models give: text, thinking then text, a function call, a failure
    {"model": "scripted/echo", "input": "hello there"},
    {"model": "scripted/think", "input": "hmm"},
    {"model": "scripted/tools", "input": "weather?", "tools": [TOOL]},
    {"model": "scripted/fail", "input": "hi"},
    {"model": "scripted/echo", "input": "a b c d e f", "max_output_tokens": 2},
    {"model": "scripted/echo", "input": "hi", "text": {"format": {"type": "json_object"}}},
]


@pytest.mark.parametrize("body", RESPONSES, ids=lambda b: b["model"] + ("+cap" if "max_output_tokens" in b else ""))
def test_every_responses_event_and_object_is_valid_by_openais_schema(client, body):
    streamed = events(client.post("/v1/responses", json={**body, "stream": True}))
    assert len(streamed) >= 3
    for event in streamed:
        assert_valid(event, event_schemas()[event["type"]])
        assert_valid(event, "ResponseStreamEvent")
    whole = client.post("/v1/responses", json=body)
    if whole.status_code == 200:
        assert_valid(whole.json, "Response")
        assert_valid(client.get(f"/v1/responses/{whole.json['id']}").json, "Response")
        assert_valid(client.get(f"/v1/responses/{whole.json['id']}/input_items").json, "ResponseItemList")


@pytest.mark.parametrize("body", [
    {"model": "scripted/echo"},
    {"model": "scripted/think"},
    {"model": "scripted/tools", "tools": [{"type": "function", "function": {"name": TOOL["name"],
                                                                            "parameters": TOOL["parameters"]}}]},
])
def test_chat_completions_and_their_chunks_are_valid_by_openais_schema(client, body):
    body = {**body, "messages": [{"role": "user", "content": "weather in Paris?"}]}
    whole = client.post("/v1/chat/completions", json=body)
    assert whole.status_code == 200, whole.data
    assert_valid(whole.json, "CreateChatCompletionResponse")
    for chunk in events(client.post("/v1/chat/completions", json={**body, "stream": True,
                                                                   "stream_options": {"include_usage": True}})):
        assert_valid(chunk, "CreateChatCompletionStreamResponse")


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_tokens_chunk_made_around_its_text_is_the_chunk_made_whole(include_usage):
    """Token chunks are made from a template (openai_api.ChunkEncoder): any text gives the bytes
    the whole chunk's encoding gives, and a chunk the schema takes."""
    encoder = ChunkEncoder(SimpleNamespace(id="t1", model="local/m"), include_usage)
    for n, text in enumerate(['"quoted"', "line\nbreak\r\t", "back\\slash", "é ü 中 🙂", "\u2028\u2029", "\0text\0",
                              "</script>", "", "{\"content\": 1}"]):
        chunk = encoder(StreamEvent("token", {"token": text, "count": n + 1}, "t1", n + 1))
        assert chunk == encoder.chunk({"content": text}), text
        body = json.loads(chunk.removeprefix(b"data: "))
        assert body["choices"][0]["delta"] == {"content": text}
        assert_valid(body, "CreateChatCompletionStreamResponse")


def test_embeddings_are_valid_by_openais_schema(client):
    """As floats: the document has no shape for base64 (a string where the floats were)."""
    reply = client.post("/v1/embeddings", json={"model": "scripted/echo", "input": ["a", "b"]})
    assert_valid(reply.json, "CreateEmbeddingResponse")


def test_the_check_can_fail():
    """A response missing a required field is caught: the schemas are read, not skipped."""
    with pytest.raises(AssertionError, match="'output' is a required property"):
        assert_valid({"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "m"},
                     "Response")


@pytest.mark.slow
def test_the_real_models_responses_events_are_valid_by_openais_schema(server):
    import requests

    body = {"model": "local/smollm2-135m-instruct", "input": "Name a river.", "max_output_tokens": 24,
            "temperature": 0}
    reply = requests.post(f"{server.url}/v1/responses", json={**body, "stream": True}, timeout=60)
    streamed = [json.loads(e.data) for e in decode_all(reply.content) if e.data]
    assert streamed[-1]["type"] in ("response.completed", "response.incomplete")
    for event in streamed:
        assert_valid(event, event_schemas()[event["type"]])
    assert_valid(requests.post(f"{server.url}/v1/responses", json=body, timeout=60).json(), "Response")
