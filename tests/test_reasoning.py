"""The `<think>` splitter: wherever the pieces are cut, reasoning and answer come out whole."""
from hypothesis import given
from hypothesis import strategies as st

from backend.chat.reasoning import ReasoningSplitter

TEXT = "<think>Two and two, <b>4</b>; a < in here.</think>The answer is 4 </thin and < too."


def run(pieces: list[str], tags: str = "<think>,</think>") -> tuple[str, str]:
    splitter = ReasoningSplitter(tags)
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
