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
from transformers.cache_utils import DynamicLayer

from .base import CancelToken, ChatMessage, Failure, Finish, GenerationOptions, Piece, Prompt, ProviderError
from .decoding import IncrementalDecoder, Sampler, StopMatcher


class Row:
    """One turn in the batch. `emit` receives its Prompt, Pieces, then a Finish or a Failure."""

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
            self.emit(Piece(piece))
        if stopped:
            return self.finish("stop_sequence")
        if self.produced >= self.options.max_tokens:
            return self.finish("length")
        self.last_token = token

    def finish(self, reason: str) -> None:
        if reason != "stop_sequence" and (rest := self.stops.flush()):
            self.emit(Piece(rest))
        extra = {"hidden_states": self.provider.hidden_payload(*self.hidden)} if self.hidden else {}
        if self.stops.matched:
            extra["stop_sequence"] = self.stops.matched
        self.emit(Finish(reason, prompt_tokens=len(self.prompt), completion_tokens=self.produced, extra=extra))
        self.done = True

    def fail(self, error: ProviderError) -> None:
        self.emit(Failure(error))
        self.done = True


class GrowingLayer(DynamicLayer):
    """A cache layer that writes each step into spare room instead of concatenating: with a
    batch of 16, re-copying the whole cache every step cost about 15% of the step."""

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.set(key_states, value_states)
            return self.keys, self.values
        start, end = self.keys.shape[-2], self.keys.shape[-2] + key_states.shape[-2]
        if end > self.key_room.shape[-2]:
            self.set(self.keys, self.values, extra=key_states.shape[-2])
        self.key_room[:, :, start:end] = key_states
        self.value_room[:, :, start:end] = value_states
        self.keys, self.values = self.key_room[:, :, :end], self.value_room[:, :, :end]
        return self.keys, self.values

    def set(self, keys: torch.Tensor, values: torch.Tensor, extra: int = 0) -> None:
        """Hold these states, with room to grow (used also after rows join or leave)."""
        length = keys.shape[-2]
        shape = (*keys.shape[:2], max(64, 2 * (length + extra)), keys.shape[-1])
        self.key_room, self.value_room = keys.new_empty(shape), values.new_empty(shape)
        self.key_room[:, :, :length] = keys
        self.value_room[:, :, :length] = values
        self.keys, self.values = self.key_room[:, :, :length], self.value_room[:, :, :length]


def new_cache(config) -> DynamicCache:
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() for _ in cache.layers]
    return cache


class Batch:
    def __init__(self, model, pad_id: int):
        self.model = model
        self.pad_id = pad_id
        self.rows: list[Row] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, cached positions], 1 = a real token

    def _forward(self, rows: list[Row], **inputs):
        want_hidden = any(r.options.hidden_states for r in rows)
        # Only the last position's logits are needed (a prompt's others would cost a vocabulary-
        # sized matmul each); float32 because CPU argmax and softmax are several times faster.
        out = self.model(**inputs, use_cache=True, output_hidden_states=want_hidden, logits_to_keep=1)
        logits = out.logits[:, -1].float()
        for i, row in enumerate(rows):
            row.accept(logits[i], out.hidden_states[-1][i, -1] if want_hidden else None)
        return out

    @torch.inference_mode()
    def admit(self, rows: list[Row]) -> None:
        """Prefill new rows together and sample their first token, then merge them in."""
        width = max(len(r.prompt) for r in rows)
        ids = torch.tensor([[self.pad_id] * (width - len(r.prompt)) + r.prompt for r in rows])
        mask = torch.tensor([[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in rows])
        cache = new_cache(self.model.config)
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
            mine.set(torch.cat([left_pad(mine.keys, 2), left_pad(theirs.keys, 2)]),
                     torch.cat([left_pad(mine.values, 2), left_pad(theirs.values, 2)]))
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
            layer.set(layer.keys[index, :, first:], layer.values[index, :, first:])
        return done
