"""A scripted provider for transport tests that need exact pieces, delays or a failure.

It never stands in for the real model: integration tests of generation use the local model.
Model ids: `echo` (the last user message, word by word), `fail` (three pieces, then an
exception), `slow` (waits 1.5 s before each of two pieces, so keep-alives are sent), `xss`
(hostile Markdown and HTML, cut into pieces mid-tag, for the browser tests), `long` (N pieces
of Markdown, N the first number in the message, 400 by default, for the UI benchmark), `hold`
(no pieces until cancelled: an idle open stream, for the memory benchmark), `think`
(`<think>...</think>` then an answer, the tags cut across pieces), `history` (the conversation it
was given, one piece per message: `role: content | `), `tools` (reasoning, then a call
to each tool given (or to get_weather when none are), at most two, their arguments cut mid-JSON;
after a tool result, an answer that quotes it), `sees` (like `history`, with each message's
images by type, pixel size and SHA-256; the only one that reads images).
"""
from __future__ import annotations

import hashlib
import itertools
import re
from time import sleep  # green under eventlet, where this runs as a green thread

from rill.providers.base import Embeddings, Finish, ProviderError, Reasoning, Tool, ToolCallPart
from rill.providers.streamed import Streamed

# Everything a page must show as text or drop: none of it may run, load or navigate.
XSS = """Hostile reply <script>window.__xss = 'script'; alert('script')</script>

<img src=x onerror="window.__xss = 'img'; alert('img')">

[click me](javascript:window.__xss='link';alert('link')) and [mixed case](JaVaScRiPt:alert('case'))
and [entity](&#106;avascript:alert('entity')) and [data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)

<svg onload="window.__xss = 'svg'; alert('svg')"><circle r="9"></circle></svg>

<a href="javascript:alert('raw')" onclick="alert('click')">raw anchor</a>
<iframe src="javascript:alert('iframe')"></iframe>
<details open ontoggle="window.__xss = 'details'">details</details>

![image](x" onerror="alert('md-img'))

<div style="position:fixed;inset:0">overlay</div><form action="javascript:alert('form')"><button>go</button></form>

```html
<script>alert('in a code block')</script>
```

A safe [link](https://example.com/ok) stays.
"""

LONG_BLOCKS = [
    "## Section {n}\n\n",
    "Rivers **carry** water, `sediment` and *stories* to the sea; every bend is a small delta of time.\n\n",
    "- a first item with a [link](https://example.com/{n})\n- a second item\n- a third item\n\n",
    "```python\ndef flow(n):\n    return n * {n}  # doubled downstream\n```\n\n",
    "> A quoted line about rivers, number {n}.\n\n",
]


def long_pieces(count: int) -> list[str]:
    """`count` word-sized pieces of Markdown: headings, paragraphs, lists, code, quotes."""
    blocks = (block.format(n=n) for n in itertools.count() for block in LONG_BLOCKS)
    words = (word for block in blocks for word in re.findall(r"\s*\S+\s*", block))
    return list(itertools.islice(words, count))


class ScriptedProvider(Streamed):
    name = "scripted"
    passthrough = False

    def unavailable(self):
        return None

    def models(self):
        return [{"id": m, "state": "ready"}
                for m in ("echo", "fail", "slow", "xss", "long", "hold", "think", "tools", "history", "sees", "call")]

    def input_modalities(self, model):
        return ["text", "image"] if model == "sees" else ["text"]

    def load(self):
        pass

    def embed(self, model, inputs):
        """Vectors of 4 from each input's SHA-256: equal inputs, equal vectors."""
        if model != "echo":
            raise ProviderError(f"scripted/{model} gives no embeddings", type="invalid_request_error")
        vectors = []
        for item in inputs:
            digest = hashlib.sha256(repr(item).encode()).digest()
            vectors.append([(b - 128) / 128 for b in digest[:4]])
        return Embeddings(vectors, sum(len(item.split()) if isinstance(item, str) else len(item) for item in inputs))

    def stream(self, model, messages, options, cancel):
        if model == "hold":  # an open stream with nothing to say until cancelled (memory bench)
            while not cancel.is_set():
                sleep(1.0)
            yield Finish("cancelled", 1, 0)
            return
        if model == "tools":
            yield from tool_turn(messages, options)
            return
        if model == "call":
            yield from call_turn(messages, options)
            return
        if model == "echo":
            pieces = [w + " " for w in messages[-1].content.split()]
        elif model == "history":
            pieces = [f"{m.role}: {m.content} | " for m in messages]
        elif model == "sees":
            pieces = [f"{m.role}: {m.content} {[described(i) for i in m.images]} | " for m in messages]
        elif model == "think":
            pieces = ["<thi", "nk>Two and two ", "make four.</th", "ink>", "The answer ", "is 4."]
        elif model == "slow":
            pieces = ["slow ", "reply"]
        elif model == "xss":
            pieces = [XSS[i:i + 7] for i in range(0, len(XSS), 7)]  # cut through tags and attributes
        elif model == "long":
            number = re.search(r"\d+", messages[-1].content)
            pieces = long_pieces(min(int(number.group()) if number else 400, 20000))
        else:
            pieces = ["about ", "to ", "fail "]
        for n, piece in enumerate(pieces):
            if cancel.is_set():
                yield Finish("cancelled", 1, n)
                return
            if model == "slow":
                sleep(1.5)
            elif model in ("xss", "long"):
                sleep(0.002)  # fast, but spread over many reads and frames
            yield piece
        if model == "fail":
            raise RuntimeError("scripted failure in the middle of a reply")
        yield Finish("stop", 1, len(pieces))


def described(image) -> str:
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(image.data)) as opened:
        return f"{image.media_type} {opened.width}x{opened.height} {image.sha256}"


def call_turn(messages, options):
    """`call`: the question `<tool> <JSON arguments>` becomes that call, in two pieces; after its
    result, the answer quotes it (a tool Rill runs: the MCP tests)."""
    if messages[-1].role == "tool":
        for piece in ["The result is ", messages[-1].content, "."]:
            yield piece
        yield Finish("stop", 3, 3)
        return
    name, _, arguments = messages[-1].content.partition(" ")
    if name not in {tool.name for tool in options.tools} or options.tool_choice == "none":
        yield f"no tool {name} to call"
        yield Finish("stop", 3, 1)
        return
    yield ToolCallPart(0, f"call_{name}", name)
    middle = len(arguments) // 2
    yield ToolCallPart(0, arguments=arguments[:middle])
    yield ToolCallPart(0, arguments=arguments[middle:])
    yield Finish("tool_calls", 3, 2)


def tool_turn(messages, options):
    """`tools`: think, then call the tools (arguments cut mid-JSON); after results, answer."""
    if messages[-1].role == "tool":
        results = [m.content for m in messages if m.role == "tool"]
        for piece in ["The tool said: ", *results]:
            yield piece
        yield Finish("stop", 1, 1 + len(results))
        return
    tools = options.tools or (Tool("get_weather"),)  # the app's API sends none: a call to show anyway
    yield Reasoning("I should call ")
    yield Reasoning("the tools.")
    for index, tool in enumerate(tools[:2]):
        yield ToolCallPart(index, f"call_{index}_{tool.name}", tool.name)
        for fragment in ['{"ci', 'ty": "Par', f'is", "n": {index}', "}"]:
            yield ToolCallPart(index, arguments=fragment)
    yield Finish("tool_calls", 1, 4)
