"""The test decoder follows the spec, and our encoder's output decodes to what was sent."""
import json

from rill.chat.events import StreamEvent
from rill.transports.sse import encode
from tests.sse import SSEDecoder, decode_all


def test_line_endings_cr_lf_crlf_are_all_line_breaks():
    events = decode_all(b"data: a\r\rdata: b\n\ndata: c\r\n\r\n")
    assert [e.data for e in events] == ["a", "b", "c"]


def test_crlf_split_across_chunks_is_one_line_break():
    decoder = SSEDecoder()
    got = decoder.feed(b"data: x\r") + decoder.feed(b"\n\r") + decoder.feed(b"\n")
    assert [e.data for e in got] == ["x"]


def test_multiline_data_comments_and_fields():
    events = decode_all(b": hello\nevent: token\nid: 7\ndata: one\ndata:two\n\n")
    assert len(events) == 1
    assert (events[0].type, events[0].data, events[0].id) == ("token", "one\ntwo", "7")


def test_unfinished_event_at_end_is_dropped():
    assert decode_all(b"data: complete\n\ndata: cut") == [decode_all(b"data: complete\n\n")[0]]


def test_utf8_split_across_chunks_and_bom():
    raw = "\ufeffdata: héllo 🌊\n\n".encode()
    decoder = SSEDecoder()
    events = [e for i in range(len(raw)) for e in decoder.feed(raw[i : i + 1])]
    assert [e.data for e in events] == ["héllo 🌊"]


def test_event_without_data_is_not_dispatched():
    assert decode_all(b"event: token\n\n") == []


def test_encoder_round_trips_every_kind_and_awkward_text():
    sent = [
        StreamEvent("start", {"session_id": "s", "turn_id": "t", "model": "m"}, "t", 0),
        StreamEvent("token", {"token": "line\nbreak\r\n: not a comment", "count": 1}, "t", 1),
        StreamEvent("token", {"token": "data: 🌊 \u2028", "count": 2}, "t", 2),
        StreamEvent("done", {"done": True, "tokens": 2}, "t", 3),
        StreamEvent("error", {"error": {"type": "x", "message": "y"}}, "t", 4),
    ]
    raw = b"".join(encode(e) for e in sent[:3]) + encode(StreamEvent("ping", {}, "t", -1)) + b"".join(
        encode(e) for e in sent[3:])
    decoder = SSEDecoder()
    got = decoder.feed(raw)
    assert [(e.type, json.loads(e.data), e.id) for e in got] == [(e.kind, e.data, str(e.seq)) for e in sent]
    assert decoder.comments == [" ping"]
