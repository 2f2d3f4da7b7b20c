"""prefix_cache.template_closing: the chat template's tokens between a reply and the next user
message, which both local engines feed into a finished chat's cache while the person types."""
import re

from jinja2.sandbox import ImmutableSandboxedEnvironment

from rill.providers.local.prefix_cache import template_closing

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Llama 3's shape: each message's content trimmed.
TRIMMED = ("{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content | trim }}"
           "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
           "{% endif %}")
REWRITTEN = "{% for m in messages %}[{{ m.role }}] {{ m.content | upper }}\n{% endfor %}"


def closing(template: str, encode=lambda text: [ord(c) for c in text]) -> str:
    """The closing's text, through a tokenizer of one token a character unless `encode` says."""
    source = ImmutableSandboxedEnvironment().from_string(template)
    tokens = template_closing(lambda chat: source.render(messages=chat, add_generation_prompt=True), encode)
    return "".join(chr(t) for t in tokens)


def test_a_chatml_template_closes_a_reply_up_to_the_next_user_message():
    assert closing(CHATML) == "<|im_end|>\n<|im_start|>user\n"


def test_a_template_that_trims_each_message_still_has_its_closing():
    assert closing(TRIMMED) == "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"


def test_a_template_that_rewrites_the_reply_has_none():
    assert closing(REWRITTEN) == ""


def test_none_where_the_reply_and_the_closing_merge_into_one_token():

    def encode(text: str) -> list[int]:  # "." and the "<" after it are one token
        return [0x10000 if piece == ".<" else ord(piece) for piece in re.findall(r"\.<|.", text, re.S)]

    assert closing(CHATML, encode) == ""


def test_none_where_the_template_refuses_the_chat():
    assert closing("{{ raise_exception('no') }}") == ""
