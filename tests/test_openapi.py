"""Fast tier: /openapi.json says what the validators do, and lists every route."""
import pytest

from rill.errors import ApiError
from rill.api.requests import parse

MODELS = ["ChatRequest", "Approval", "OpenAIChatRequest", "ResponsesRequest", "EmbeddingsRequest", "AnthropicRequest",
          "LoadRequest",
          "SessionCreate", "ThreadCreate", "ThreadUpdate", "MessageCreate", "MessageUpdate", "ForkRequest", "ShareRequest"]


@pytest.fixture
def doc(client):
    return client.get("/openapi.json").json


def request_model(name):
    from rill.api.models import LoadRequest
    from rill.api.sessions import SessionCreate
    from rill.schemas.anthropic import AnthropicRequest
    from rill.schemas.chat import Approval, ChatRequest
    from rill.schemas.embeddings import EmbeddingsRequest
    from rill.schemas.openai import OpenAIChatRequest
    from rill.schemas.responses import ResponsesRequest
    from rill.schemas.threads import (ForkRequest, MessageCreate, MessageUpdate, ShareRequest, ThreadCreate,
                                         ThreadUpdate)

    return {model.__name__: model for model in (LoadRequest, SessionCreate, AnthropicRequest, ChatRequest, Approval,
                                                OpenAIChatRequest, ResponsesRequest, EmbeddingsRequest, ThreadCreate, ThreadUpdate,
                                                MessageCreate, MessageUpdate, ForkRequest, ShareRequest)}[name]


# Fields a body gives one of: ChatRequest's thread by either name, ThreadUpdate's branch by its end or a message on it.
EXCLUSIVE = [("thread_id", "session_id"), ("current_leaf", "branch")]  # the first kept by default


def without_rivals(body: dict, field: str) -> dict:
    """The body with one field of each exclusive pair: `field` when it is one of them."""
    dropped = {pair[1] if field != pair[1] else pair[0] for pair in EXCLUSIVE}
    return {k: v for k, v in body.items() if k not in dropped}


def branches(prop):
    return [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]


def bound_cases(prop, item="x"):
    """(value, accepted) pairs at and just past each bound the document states."""
    for s in branches(prop):
        kind, step = s.get("type"), 1 if s.get("type") == "integer" else 1e-6
        if kind in ("integer", "number"):
            if "minimum" in s:
                yield s["minimum"], True
                yield s["minimum"] - step, False
            if "maximum" in s:
                yield s["maximum"], True
                yield s["maximum"] + step, False
            if "exclusiveMinimum" in s:
                yield s["exclusiveMinimum"], False
                yield s["exclusiveMinimum"] + step, True
            if kind == "integer":
                low = s.get("minimum", 1)
                yield float(low), True  # JSON Schema's integer includes 1.0
                yield low + 0.5, False
        if kind == "string":
            if "minLength" in s:
                yield "a" * s["minLength"], True
                if s["minLength"]:
                    yield "a" * (s["minLength"] - 1), False
            if "maxLength" in s:
                yield "a" * s["maxLength"], True
                yield "a" * (s["maxLength"] + 1), False
        if kind == "array" and "maxItems" in s:  # `item`: a valid element (the examples give one)
            yield [item] * s["maxItems"], True
            yield [item] * (s["maxItems"] + 1), False
        if kind == "array" and s.get("minItems"):
            yield [], False


@pytest.mark.parametrize("name", MODELS)
def test_the_documents_examples_pass_the_validator(app, doc, name):
    examples = doc["components"]["schemas"][name]["examples"]
    assert examples
    with app.test_request_context():
        for example in examples:
            parse(request_model(name), example)


@pytest.mark.parametrize("name", MODELS)
def test_the_documents_bounds_are_the_validators(app, doc, name):
    schema = doc["components"]["schemas"][name]
    base = {k: v for example in schema["examples"] for k, v in example.items()}
    checked, wrong = 0, []
    with app.test_request_context():
        for field, prop in schema["properties"].items():
            sample = base.get(field)
            for value, accepted in bound_cases(prop, sample[0] if isinstance(sample, list) and sample else "x"):
                checked += 1
                body = without_rivals(base, field)
                try:
                    parse(request_model(name), {**body, field: value})
                    outcome = True
                except ApiError as err:
                    outcome = False
                    if accepted or err.status != 400 or field not in err.message:
                        wrong.append((field, repr(value)[:30], err.message))
                if outcome != accepted:
                    wrong.append((field, repr(value)[:30], "accepted" if outcome else "refused"))
    assert not wrong
    assert checked >= 2


def test_settings_bounds_are_in_the_document(make_app):
    doc = make_app(max_message_chars=50, max_tokens_cap=9).test_client().get("/openapi.json").json
    chat = doc["components"]["schemas"]["ChatRequest"]["properties"]
    assert branches(chat["message"])[0]["maxLength"] == 50
    assert branches(chat["max_tokens"])[0]["maximum"] == 9


def test_blank_messages_are_refused_as_documented(client, doc):
    message = branches(doc["components"]["schemas"]["ChatRequest"]["properties"]["message"])[0]
    assert message["minLength"] == 1 and message["pattern"] == r"\S"
    for blank in ("", "  \n"):
        r = client.post("/api/chat", json={"message": blank})
        assert r.status_code == 400 and "must not be empty" in r.json["error"]["message"]


def test_every_route_is_documented(app, doc):
    undocumented = {"/", "/openapi.json", "/static/<path:filename>"}
    for rule in app.url_map.iter_rules():
        if rule.rule in undocumented:
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        assert path in doc["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], (method, path)


def test_replace_turn_needs_a_thread(client):
    r = client.post("/api/chat", json={"message": "hi", "replace_turn": "t1"})
    assert r.status_code == 400 and "replace_turn needs the thread_id" in r.json["error"]["message"]


def test_405_says_what_is_allowed(client):
    r = client.put("/api/chat/stream")
    assert r.status_code == 405 and r.json["error"]["type"] == "method_not_allowed"
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"POST"}
