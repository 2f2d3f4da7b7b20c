"""/v1/chat/completions and /v1/messages, judged by the official openai and anthropic SDKs."""
import anthropic
import openai
import pytest
import requests

from tests.sse import SSEStream

pytestmark = pytest.mark.slow

MODEL = "local/smollm2-135m-instruct"
GREEDY_OPENAI = {"temperature": 0, "max_tokens": 16}
CONVO = [{"role": "system", "content": "You are a pirate."},
         {"role": "user", "content": "My name is Zorblat."},
         {"role": "assistant", "content": "Ahoy, Zorblat!"},
         {"role": "user", "content": "What is my name?"}]


@pytest.fixture
def oai(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture
def ant(server):
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


# --- OpenAI ---------------------------------------------------------------------------------

def test_openai_stream_equals_non_stream_with_usage(oai):
    full = oai.chat.completions.create(model=MODEL, messages=CONVO, **GREEDY_OPENAI)
    assert full.object == "chat.completion" and full.choices[0].message.role == "assistant"
    raw = oai.chat.completions.with_raw_response.create(model=MODEL, messages=CONVO, **GREEDY_OPENAI)
    assert raw.http_response.json()["choices"][0]["message"]["refusal"] is None  # OpenAI's schema requires it
    text = full.choices[0].message.content
    assert text and full.usage.completion_tokens > 0
    assert full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens
    chunks = list(oai.chat.completions.create(model=MODEL, messages=CONVO, stream=True,
                                               stream_options={"include_usage": True}, **GREEDY_OPENAI))
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3 and "".join(pieces) == text
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == full.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {chunks[0].id}


def test_openai_length_and_stop_reasons(oai):
    short = oai.chat.completions.create(model=MODEL, messages=CONVO[-1:], temperature=0, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    done = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say OK."}],
                                       temperature=0, max_tokens=200)
    assert done.choices[0].finish_reason == "stop" and done.usage.completion_tokens < 200


def test_openai_stream_without_usage_ends_with_done_marker(server):
    s = SSEStream(f"{server.url}/v1/chat/completions",
                  {"model": MODEL, "messages": CONVO[-1:], "stream": True, "max_tokens": 4})
    events = list(s)
    s.close()
    assert events[-1].data == "[DONE]" and all(e.type == "message" and e.id == "" for e in events)
    assert all("usage" not in e.json() for e in events[:-1])


def test_openai_system_prompt_reaches_the_model(oai):
    plain = oai.chat.completions.create(model=MODEL, messages=CONVO[1:], **GREEDY_OPENAI)
    pirate = oai.chat.completions.create(model=MODEL, messages=CONVO, **GREEDY_OPENAI)
    assert pirate.usage.prompt_tokens != plain.usage.prompt_tokens


@pytest.mark.parametrize("kwargs,exc,words", [
    ({"model": "local/nope"}, openai.NotFoundError, "unknown model"),
    ({"temperature": 5}, openai.BadRequestError, "temperature"),
    ({"max_tokens": 0}, openai.BadRequestError, "max_tokens"),
    ({"max_tokens": 10**7}, openai.BadRequestError, "at most"),
    ({"messages": []}, openai.BadRequestError, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, openai.BadRequestError, "role"),
    ({"n": 2}, openai.BadRequestError, "n"),
    ({"model": "scripted/nope"}, openai.NotFoundError, "unknown model"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_errors_are_the_sdks_own_exceptions(oai, kwargs, exc, words, stream):
    args = {"model": MODEL, "messages": CONVO[-1:], **kwargs}
    with pytest.raises(exc) as err:
        oai.chat.completions.create(stream=stream, **args)
    assert words in err.value.message
    assert set(err.value.body) >= {"message", "type", "code"}


def test_openai_error_mid_stream_raises(oai):
    with pytest.raises(openai.APIError, match="scripted failure"):
        for _ in oai.chat.completions.create(model="scripted/fail", messages=CONVO[-1:], stream=True):
            pass


def test_openai_models_list(oai):
    ids = [m.id for m in oai.models.list()]
    assert MODEL in ids and "scripted/echo" in ids


# --- Anthropic ------------------------------------------------------------------------------

GREEDY = {"max_tokens": 16, "extra_body": {"temperature": 0}}  # this SDK has no temperature argument


def test_anthropic_stream_equals_non_stream(ant):
    system, convo = CONVO[0]["content"], CONVO[1:]
    full = ant.messages.create(model=MODEL, system=system, messages=convo, **GREEDY)
    assert full.type == "message" and full.role == "assistant" and full.content[0].type == "text"
    text = full.content[0].text
    assert text and full.usage.input_tokens > 10 and full.usage.output_tokens > 0
    with ant.messages.stream(model=MODEL, system=system, messages=convo, **GREEDY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3 and "".join(pieces) == text == final.content[0].text
    assert final.stop_reason == full.stop_reason
    assert final.usage.output_tokens == full.usage.output_tokens
    assert final.usage.input_tokens == full.usage.input_tokens


def test_anthropic_event_sequence(server):
    s = SSEStream(f"{server.url}/v1/messages",
                  {"model": MODEL, "max_tokens": 5, "stream": True, "temperature": 0,
                   "messages": [{"role": "user", "content": "Hi"}]})
    events = [e for e in s]
    s.close()
    names = [e.type for e in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert all(e.json()["type"] == e.type for e in events)
    start = events[0].json()["message"]
    assert start["content"] == [] and start["usage"]["input_tokens"] > 0 and start["stop_reason"] is None
    delta = events[-2].json()
    assert delta["delta"]["stop_reason"] == "max_tokens" and delta["usage"]["output_tokens"] == 5


def test_anthropic_stop_reasons(ant):
    short = ant.messages.create(model=MODEL, messages=[{"role": "user", "content": "Count to ten."}],
                                max_tokens=3, extra_body={"temperature": 0})
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3
    text = ant.messages.create(model=MODEL, messages=[{"role": "user", "content": "Count to ten."}],
                               max_tokens=30, extra_body={"temperature": 0}).content[0].text
    # A piece from the middle of the reply, whatever its words: after other conversations the
    # server's cached prefixes can tip greedy SmolLM2 into a reply without spaces ("12.12.13.").
    stop = text[len(text) // 2:][:3]
    cut = ant.messages.create(model=MODEL, messages=[{"role": "user", "content": "Count to ten."}],
                              max_tokens=30, stop_sequences=[stop], extra_body={"temperature": 0})
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert "".join(block.text for block in cut.content) == text[:text.index(stop)]  # may be empty


@pytest.mark.parametrize("kwargs,exc,words", [
    ({"model": "local/nope"}, anthropic.NotFoundError, "unknown model"),
    ({"max_tokens": 0}, anthropic.BadRequestError, "max_tokens"),
    ({"messages": [{"role": "system", "content": "x"}]}, anthropic.BadRequestError, "role"),
    ({"extra_body": {"temperature": 1.5}}, anthropic.BadRequestError, "temperature"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_errors_are_the_sdks_own_exceptions(ant, kwargs, exc, words, stream):
    args = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], **kwargs}
    with pytest.raises(exc) as err:
        if stream:
            with ant.messages.stream(**args) as s:
                s.until_done()
        else:
            ant.messages.create(**args)
    assert words in err.value.message
    assert err.value.body["type"] == "error"


def test_anthropic_error_mid_stream_raises(ant):
    with pytest.raises(anthropic.APIStatusError, match="scripted failure"):
        with ant.messages.stream(model="scripted/fail", max_tokens=8,
                                 messages=[{"role": "user", "content": "x"}]) as s:
            s.until_done()


# --- Hidden states --------------------------------------------------------------------------

def check_hidden(hidden):
    assert hidden["layer"] == 30 and hidden["dimension"] == 576 == len(hidden["values"])
    assert all(isinstance(v, float) for v in hidden["values"]) and any(v != 0 for v in hidden["values"])


def test_hidden_states_in_every_final_event(server, oai, ant):
    body = {"message": "Hi", "temperature": 0, "max_tokens": 4, "return_hidden_states": True}
    s = SSEStream(f"{server.url}/api/chat/stream", body)
    done = list(s)[-1].json()
    s.close()
    check_hidden(done["hidden_states"])
    reply = requests.post(f"{server.url}/api/chat", json=body, timeout=60).json()
    assert reply["hidden_states"] == done["hidden_states"]  # greedy: the same last token, the same state

    extra = {"extra_body": {"return_hidden_states": True}}
    chunks = list(oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                               stream=True, temperature=0, max_tokens=4, **extra))
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    check_hidden(last.model_extra["hidden_states"])
    full = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                       temperature=0, max_tokens=4, **extra)
    assert full.model_extra["hidden_states"] == last.model_extra["hidden_states"]

    s = SSEStream(f"{server.url}/v1/messages", {"model": MODEL, "max_tokens": 4, "stream": True, "temperature": 0,
                                                "return_hidden_states": True,
                                                "messages": [{"role": "user", "content": "Hi"}]})
    delta = [e for e in s if e.type == "message_delta"][0].json()
    s.close()
    check_hidden(delta["hidden_states"])
    message = ant.messages.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": "Hi"}],
                                  extra_body={"temperature": 0, "return_hidden_states": True})
    assert message.model_extra["hidden_states"] == delta["hidden_states"]
    plain = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert "hidden_states" not in (plain.model_extra or {})
