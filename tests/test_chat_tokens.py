"""A chat's tokens by its pieces between end-of-turn tokens (Vocab.encode_chat) against the whole
text tokenized at once, on the wheel's vocabulary: every id the same, cached or not."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rill.providers.local.choice import wheel_gguf_path
from rill.providers.local import llama_cpp
from rill.providers.local.llama_cpp import cuts_exactly, load_vocab

END = "<|im_end|>"  # SmolLM2's end of a turn, as its template writes it


@pytest.fixture(scope="module")
def vocab():
    return load_vocab(wheel_gguf_path())[1]


def end_id(vocab):
    (token,) = vocab.encode(END)
    return token


# Texts around and between the template's markers: whitespace where a marker could strip it,
# markers written into a message, parts of markers, other scripts.
words = st.sampled_from([END, "<|im_start|>", "<|endoftext|>", "user\n", "assistant\n", "\n", " ", "  \n\n",
                         "\t", "Hello", " world", "é", "你好", "<|im_end", "im_end|>", "<", ">", "|", "'s", "123"])
chats = st.lists(words | st.text(max_size=6), max_size=40).map("".join)


@given(text=chats)
@settings(max_examples=300, deadline=None)
def test_a_chat_tokenized_by_its_turns_gets_the_ids_of_the_whole_text(vocab, text):
    whole = vocab.encode(text)
    assert vocab.encode_chat(text, end_id(vocab)) == whole
    assert vocab.encode_chat(text, end_id(vocab)) == whole  # its pieces from the cache now


def test_a_long_chat_is_cut_after_each_turn_and_its_earlier_turns_tokenized_once(vocab):
    turns = [f"<|im_start|>user\nQuestion {n}?{END}\n<|im_start|>assistant\nAnswer {n}.{END}\n" for n in range(20)]
    before = len(vocab.kept)
    first = vocab.encode_chat("".join(turns[:19]) + "<|im_start|>assistant\n", end_id(vocab))
    assert first == vocab.encode("".join(turns[:19]) + "<|im_start|>assistant\n")
    assert len(vocab.kept) - before == 2 * 19 + 1  # each piece between two end tokens, and the last
    text = "".join(turns) + "<|im_start|>assistant\n"
    assert vocab.encode_chat(text, end_id(vocab)) == vocab.encode(text)
    assert len(vocab.kept) - before == 2 * 19 + 1 + 2  # the new turn's question and answer only


def test_a_piece_whose_end_token_does_not_come_out_as_itself_sends_the_whole_text(vocab):
    (start,) = vocab.encode("<|im_start|>")
    vocab.cuts[start] = END  # a cut where the token at it is another: each piece's check fails
    text = f"<|im_start|>user\nHi{END}\n<|im_start|>assistant\n"
    assert vocab.encode_chat(text, start) == vocab.encode(text)
    assert vocab.kept[("<|im_start|>user\nHi", start, False, True)] is None
    assert vocab._tokenize_chat_piece("\n<|im_start|>assistant\n", start, True, False) is None  # the last piece's


def test_a_chat_is_not_cut_where_the_tokens_could_change(vocab):
    (hello,) = vocab.encode("Hello")
    assert vocab._cut_text(hello) == ""  # not a special token: the text around it runs together
    assert vocab._cut_text(-1) == ""
    assert vocab._cut_text(end_id(vocab)) == END
    assert cuts_exactly(END, ["<|im_start|>", "<|endoftext|>", END])
    assert not cuts_exactly(END, ["<|im_start|>", "<|im_end|>x"])  # it could be found across the cut
    assert not cuts_exactly(END, ["a>b"])
    assert not cuts_exactly("</s> ", ["<s>"])  # its space could be stripped with another's
    assert not cuts_exactly("", [])


def test_the_pieces_kept_are_bounded_by_their_characters(vocab, monkeypatch):
    monkeypatch.setattr(llama_cpp, "CHAT_PIECE_CHARS", 100)
    text = END.join(f"piece {n} " + "x" * 30 for n in range(10))
    assert vocab.encode_chat(text, end_id(vocab)) == vocab.encode(text)
    assert vocab.kept_chars <= 100 and sum(len(key[0]) for key in vocab.kept) == vocab.kept_chars
