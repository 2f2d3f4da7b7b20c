"""Tags in streamed text (`<think>`, `<tool_call>`): wherever the pieces are cut, reasoning,
calls and answer come out whole."""
import json

from hypothesis import given
from hypothesis import strategies as st

from rill.chat.reasoning import reasoning_splitter
from rill.providers.base import ToolCallPart
from rill.providers.local.tool_calls import ToolCallReader

TEXT = "<think>Two and two, <b>4</b>; a < in here.</think>The answer is 4 </thin and < too."


def run(pieces: list[str], tags: str = "<think>,</think>") -> tuple[str, str]:
    splitter = reasoning_splitter(tags)
    out = [part for piece in pieces for part in splitter.feed(piece)] + splitter.flush()
    return ("".join(t for k, t in out if k == "reasoning"), "".join(t for k, t in out if k == "token"))


@given(st.lists(st.integers(min_value=0, max_value=len(TEXT)), max_size=12))
def test_any_cut_gives_the_same_reasoning_and_answer(cuts):
    points = sorted({0, len(TEXT), *cuts})
    pieces = [TEXT[a:b] for a, b in zip(points, points[1:])]
    assert run(pieces) == ("Two and two, <b>4</b>; a < in here.", "The answer is 4 </thin and < too.")


def test_an_unclosed_tag_is_all_reasoning_and_no_tags_is_all_answer():
    assert run(["<think>still thinking", " when it stopped"]) == ("still thinking when it stopped", "")
    assert run(["plain ", "<thi"]) == ("", "plain <thi")  # a tag that never completes is text
    assert run(["<think>x</think>y"], tags="") == ("", "<think>x</think>y")


REPLY = ('Checking <both>. <tool_call>{"name": "get_weather", "arguments": {"city": "Zürich"}}</tool_call>'
         '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
         '<tool_call>not json</tool_call> done <tool_ca')


@given(st.lists(st.integers(min_value=0, max_value=len(REPLY)), max_size=12))
def test_any_cut_gives_the_same_calls_and_text(cuts):
    points = sorted({0, len(REPLY), *cuts})
    reader = ToolCallReader()
    out = [part for a, b in zip(points, points[1:]) for part in reader.feed(REPLY[a:b])] + reader.flush()
    calls = [p for p in out if isinstance(p, ToolCallPart)]
    assert "".join(p for p in out if isinstance(p, str)) == "Checking <both>. <tool_call>not json</tool_call> done <tool_ca"
    assert [(c.index, c.name) for c in calls if c.name] == [(0, "get_weather"), (1, "get_time")]
    assert [json.loads(c.arguments) for c in calls if not c.name] == [{"city": "Zürich"}, {}]


def test_a_call_cut_off_by_the_end_of_the_reply_is_still_read():
    reader = ToolCallReader()
    out = reader.feed('<tool_call>{"name": "f", "arguments": {"a": 1}}') + reader.flush()
    assert [p.name for p in out if isinstance(p, ToolCallPart)] == ["f", None]
    reader = ToolCallReader()  # one that does not parse stays text, with no tag the model never wrote
    assert reader.feed("<tool_call>{\"na") + reader.flush() == ['<tool_call>{"na']
