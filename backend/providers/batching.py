"""Continuous batching for the local model: turns share each decode step.

Decoding one stream is bound by reading the weights from memory; a step for eight rows reads
them once. New turns are prefilled together (left-padded) between decode steps and then join
the batch; finished or cancelled rows leave it at once. Rows keep their own sampler, stop
strings and detokenizer, so per-turn options hold. The KV cache is one left-padded tensor per
layer with a 0/1 attention mask; each row's position ids count only its real tokens.
"""
from __future__ import annotations

from typing import Callable

import torch
from transformers import DynamicCache

from .base import CancelToken, ChatMessage, Finish, GenerationOptions, Prompt, ProviderError
from .decoding import IncrementalDecoder, Sampler, StopMatcher


class Row:
    """One turn in the batch. `emit` receives its Prompt, text pieces and Finish (or error)."""

    def __init__(self, provider, messages: list[ChatMessage], options: GenerationOptions, cancel: CancelToken,
                 emit: Callable):
        self.prompt = provider.encode_prompt(messages, options.max_tokens)
        self.provider = provider
        self.options = options
        self.cancel = cancel
        self.emit = emit
        self.sampler = Sampler(options)
        self.decoder = IncrementalDecoder(provider.tokenizer)
        self.stops = StopMatcher(options.stop)
        self.length = len(self.prompt)  # real tokens in the cache
        self.produced = 0
        self.last_token: int | None = None
        self.hidden = None
        self.done = False
        emit(Prompt(len(self.prompt)))

    def accept(self, logits: torch.Tensor, hidden: torch.Tensor | None) -> None:
        """Pick this row's next token from its logits; emit text; finish on a stop."""
        try:
            token = self.sampler.pick(logits)
        except Exception as exc:  # one bad row must not take the batch down
            return self.fail(ProviderError(f"local model failed: {exc}", type="model_error"))
        if token in self.provider.stop_ids:
            return self.finish("stop")
        self.produced += 1
        if hidden is not None and self.options.hidden_states:
            self.hidden = (token, hidden)
        piece, stopped = self.stops.push(self.decoder.push(token))
        if piece:
            self.emit(piece)
        if stopped:
            return self.finish("stop_sequence")
        if self.produced >= self.options.max_tokens:
            return self.finish("length")
        self.last_token = token

    def finish(self, reason: str) -> None:
        if reason != "stop_sequence" and (rest := self.stops.flush()):
            self.emit(rest)
        extra = {"hidden_states": self.provider.hidden_payload(*self.hidden)} if self.hidden else {}
        if self.stops.matched:
            extra["stop_sequence"] = self.stops.matched
        self.emit(Finish(reason, prompt_tokens=len(self.prompt), completion_tokens=self.produced, extra=extra))
        self.done = True

    def fail(self, error: ProviderError) -> None:
        self.emit(error)
        self.done = True


class Batch:
    def __init__(self, model, pad_id: int):
        self.model = model
        self.pad_id = pad_id
        self.rows: list[Row] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, cached positions], 1 = a real token

    def _forward(self, rows: list[Row], **inputs):
        want_hidden = any(r.options.hidden_states for r in rows)
        out = self.model(**inputs, use_cache=True, output_hidden_states=want_hidden)
        for i, row in enumerate(rows):
            row.accept(out.logits[i, -1], out.hidden_states[-1][i, -1] if want_hidden else None)
        return out

    @torch.inference_mode()
    def admit(self, rows: list[Row]) -> None:
        """Prefill new rows together and sample their first token, then merge them in."""
        width = max(len(r.prompt) for r in rows)
        ids = torch.tensor([[self.pad_id] * (width - len(r.prompt)) + r.prompt for r in rows])
        mask = torch.tensor([[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in rows])
        cache = DynamicCache(config=self.model.config)
        self._forward(rows, input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                      past_key_values=cache)
        if self.cache is None:
            self.cache, self.mask = cache, mask
        else:
            self._merge(cache, mask)
        self.rows += rows

    def _merge(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        width = max(self.mask.shape[1], mask.shape[1])

        def left_pad(t: torch.Tensor, dim: int) -> torch.Tensor:
            missing = width - t.shape[dim]
            if missing == 0:
                return t
            shape = list(t.shape)
            shape[dim] = missing
            return torch.cat([t.new_zeros(shape), t], dim=dim)

        for mine, theirs in zip(self.cache.layers, cache.layers):
            mine.keys = torch.cat([left_pad(mine.keys, 2), left_pad(theirs.keys, 2)])
            mine.values = torch.cat([left_pad(mine.values, 2), left_pad(theirs.values, 2)])
        self.mask = torch.cat([left_pad(self.mask, 1), left_pad(mask, 1)])

    @torch.inference_mode()
    def step(self) -> None:
        """One decode step for every row."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.rows), 1)], dim=1)
        self._forward(self.rows, input_ids=torch.tensor([[r.last_token] for r in self.rows]),
                      attention_mask=self.mask, position_ids=torch.tensor([[r.length] for r in self.rows]),
                      past_key_values=self.cache)
        for row in self.rows:
            row.length += 1

    def drop_done(self) -> list[Row]:
        """Remove finished rows, and cache columns that only padding still uses."""
        done = [r for r in self.rows if r.done]
        if not done:
            return done
        keep = [i for i, r in enumerate(self.rows) if not r.done]
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache = self.mask = None
            return done
        index = torch.tensor(keep)
        self.mask = self.mask[index]
        first = int(self.mask.any(dim=0).nonzero()[0])
        self.mask = self.mask[:, first:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, first:]
            layer.values = layer.values[index, :, first:]
        return done
