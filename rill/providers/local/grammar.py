"""Replies held to a JSON Schema while they are decoded, on both local engines.

llguidance (what llama.cpp, vLLM and SGLang use for this) compiles the schema into a grammar and,
at each step, into the set of tokens that keep the reply valid; a row's logits outside that set
are masked before it samples, so the reply cannot leave the schema. One library serves both
engines, as both sample in Python (decoding.py): llama.cpp's own grammar sampler would need its
token array built from the logits at every step (bench/structured_bench.py measures the two), and
xgrammar needs torch and triton, which the llama.cpp install does not have.
"""
from __future__ import annotations

import json

import llguidance

from ..base import GenerationOptions, OutputFormat, ProviderError, Tool

# Compact JSON: a small model given room for whitespace can spend its whole reply on it.
COMPILE_OPTIONS = {"whitespace_flexible": False}
# A call as chat templates write one (`{"name": "f", "arguments": {...}}`), with no other room for
# whitespace, for the same reason.
CALL_JSON = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def format_grammar(fmt: OutputFormat) -> str:
    return llguidance.LLMatcher.grammar_from_json_schema(fmt.schema, defaults=COMPILE_OPTIONS)


def calls_grammar(tools: tuple[Tool, ...]) -> str:
    """What may follow a `<tool_call>` the model opened (tool_calls.py): one call of one of the
    tools, `{"name": ..., "arguments": ...}`, its arguments held to the tool's parameters where the
    tool is strict (any object where not), then the closing tag."""
    calls = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
              "properties": {"name": {"const": t.name},
                             "arguments": t.parameters if t.strict else {"type": "object"}}} for t in tools]
    return llguidance.LLMatcher.grammar_from_lark(
        'start: /\\n?/ call /\\n?/ "</tool_call>"\ncall: %json ' + json.dumps({"anyOf": calls, "x-guidance": CALL_JSON}))


def refusal(options: GenerationOptions) -> str | None:
    """Why a reply cannot be held to these options' schemas while decoding (the output format's, a
    strict tool's), naming the field and the keyword; None if it can."""
    checks = [(options.output_format.param, format_grammar(options.output_format))] if options.output_format else []
    checks += [(f"tools.{n}.parameters", calls_grammar((t,))) for n, t in enumerate(options.tools) if t.strict]
    for param, grammar in checks:
        try:
            error = llguidance.LLMatcher.validate_grammar(grammar)
        except ValueError as exc:
            error = str(exc)
        if error.startswith("Unimplemented keys:"):
            keys = json.loads(error.removeprefix("Unimplemented keys:"))
            return (f"{param}: the JSON schema uses {', '.join(map(repr, keys))}, which Rill cannot hold a reply "
                    f"to while decoding; leave {'it' if len(keys) == 1 else 'them'} out")
        if error:
            return f"{param}: the JSON schema cannot be held to while decoding: {error}"
    return None


class Constraint:
    """One row's place in a grammar: which tokens may come next, and the tokens taken."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str):
        self.matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise ProviderError(f"the JSON schema cannot be held to while decoding: {self.matcher.get_error()}",
                                type="invalid_request_error")

    def mask(self, logits):
        """The logits with every token that would break the schema at -inf (numpy or torch)."""
        import numpy as np

        size = logits.shape[-1]
        bits = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), np.uint8), bitorder="little")[:size]
        allowed = bits.astype(bool)
        if type(logits).__module__ == "numpy":
            return np.where(allowed, logits, -np.inf)
        import torch

        return logits.masked_fill(~torch.from_numpy(allowed).to(logits.device), float("-inf"))

    def take(self, token: int) -> bool:
        """Step past the sampled token; True when the reply is whole and nothing more may follow."""
        if not self.matcher.consume_token(token):
            raise ProviderError(f"the reply left its JSON schema: {self.matcher.get_error()}")
        return self.matcher.is_stopped()
