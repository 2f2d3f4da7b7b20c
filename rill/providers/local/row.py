"""One turn in a batch: its prompt, sampling, text and stop state, and its place in the cache."""
from __future__ import annotations

from typing import Callable

from ..base import CancelToken, Failure, Finish, GenerationOptions, HiddenStates, Piece, ProviderError
from .contract import Media, Model
from .decoding import IncrementalDecoder, Sampler
from .grammar import Constraint, calls_grammar, format_grammar
from .speculation import Lately, Lookup
from .stops import StopMatcher
from .tool_calls import OPEN, ToolCallReader


class Row:
    """One turn in a batch. `emit` receives its Prompt, Pieces, then a Finish or a Failure. The
    batch feeds it `last_token` at position `length` and hands back logits through accept()."""

    def __init__(self, model: Model, prompt: list[int], options: GenerationOptions, cancel: CancelToken,
                 emit: Callable, media: Media | None = None, goes_on: bool = False):
        self.model = model
        self.prompt = prompt
        self.media = media  # the prompt's images, for a vision model
        self.goes_on = goes_on  # the chat holds a reply already: it is likely to go on after this one
        self.key = media.key if media else prompt  # the prompt as a prefix cache knows it
        self.options = options
        self.cancel = cancel
        self.emit = emit
        self.sampler = Sampler(options)
        self.decoder = IncrementalDecoder(model.tokenizer)
        self.stops = StopMatcher(options.stop)
        self.calls = ToolCallReader() if options.tools and options.tool_choice != "none" else None
        fmt = options.output_format
        # The grammar the next token is held to: a JSON reply's throughout, a strict tool call's
        # from its opening tag to its closing one (armed by _watch_for_call).
        self.constraint = Constraint(model.grammar_tokenizer, format_grammar(fmt)) if fmt else None
        self.calls_grammar = calls_grammar(options.tools) if self.calls and any(t.strict for t in options.tools) else None
        self.in_call = False
        self.written = ""  # the reply's last characters, where an opening tag is looked for
        self.length = len(prompt)  # real tokens in the cache
        self.cached_tokens = 0  # of the prompt, found in a cache (set by the batch)
        self.produced = 0
        self.last_token: int | None = None
        self.hidden = None  # (token, final-layer output) of the last token, when asked for
        self.lookup: Lookup | None = None  # its text indexed for guesses, from the first (speculation.py)
        self.lately: Lately | None = None  # what guesses did in its batch lately (set by the batch)
        self.done = False
        self.reason = ""
        # What the batch keeps about the row's place in its cache.
        self.fed = 0  # prompt tokens in the cache so far (a long prompt is prefilled in slices)
        self.kv: list[int] = []  # the tokens in the row's cache
        self.seq: int | None = None  # llama.cpp: the row's sequence id
        self.closing: list[int] | None = None  # what a finished chat feeds still (None: undecided)
        self.own_cache = None  # transformers: the cache of a prompt prefilled in slices, until it joins
        self.embeds = None  # transformers: a prompt with images, embedded (its slices are fed from it)

    def closing_tokens(self, closing: list[int]) -> list[int]:
        """What this finished row may feed before it is kept: the end of its reply not in the cache
        yet (a reply cut at max_tokens ends on a token not fed) and the template's `closing` after
        it, which the chat's next prompt holds next. [] where that does not pay or does not hold:
        no closing, a one-off request (goes_on: it would be fed for nothing), a reply not kept as
        written (cut at a stop sequence, tool calls), a prompt with images."""
        if not (closing and self.goes_on and self.reason in ("stop", "length") and self.key is self.prompt):
            return []
        return self.decoder.ids[len(self.kv) - len(self.prompt):] + closing

    def accept(self, logits, hidden: list[float] | None) -> None:
        """Pick this row's next token from its logits (those its schema allows); emit text; finish
        on a stop, or when its JSON is whole."""
        whole = False
        try:
            if self.constraint:
                logits = self.constraint.mask(logits)
            token = self.sampler.pick(logits)
            if token in self.model.stop_ids:
                return self.finish("stop")
            if self.constraint:
                whole = self.constraint.take(token)
        except ProviderError as exc:
            return self.fail(exc)
        except Exception as exc:  # one bad row must not take the batch down
            return self.fail(ProviderError(f"local model failed: {exc}"))
        self.produced += 1
        if self.lookup:
            self.lookup.push(token)
        if hidden is not None:
            self.hidden = (token, hidden)
        text = self.decoder.push(token)
        if self.calls_grammar and not self.in_call and text:
            try:
                self._watch_for_call(text)
            except ProviderError as exc:
                return self.fail(exc)
        piece, stopped = self.stops.push(text)
        self._text(piece)
        if stopped:
            return self.finish("stop_sequence")
        if whole and not self.in_call:
            return self.finish("stop")
        if whole:  # the call is closed: the model writes freely again
            self.constraint, self.in_call = None, False
        if self.produced >= self.options.max_tokens:
            return self.finish("length")
        self.last_token = token

    def guessing(self) -> Lookup:
        """The row's text indexed for guesses, made with the first call (from then on kept up)."""
        if self.lookup is None:
            self.lookup = Lookup(self.prompt + self.decoder.ids, self.lately)
        return self.lookup

    def room_to_guess(self, context_tokens: int) -> int:
        """How many guessed tokens a step may feed after the last one: none past the reply's cap or
        the context, none for a row that wants its last token's hidden states."""
        if self.options.hidden_states:
            return 0
        return max(0, min(self.options.max_tokens - self.produced - 1, context_tokens - self.length - 2))

    def take(self, guesses: list[int], ngram: int, outputs: Callable[[int], tuple]) -> int:
        """Pick tokens from the logits of the positions fed last_token and then the guesses
        (`outputs(i)`: position i's logits and hidden states), keeping on while each pick equals the
        guess fed after it; returns how many guesses held (their cache entries stay)."""
        held, emit, text = 0, self.emit, []

        def gather(item) -> None:  # the step's text goes out as one piece: one write for a reader
            if isinstance(item, Piece):
                return text.append(item.text)
            if text:
                emit(Piece("".join(text)))
                text.clear()
            emit(item)

        self.emit = gather
        try:
            while True:
                self.accept(*outputs(held))
                if self.done or held == len(guesses) or self.last_token != guesses[held]:
                    break
                held += 1
        finally:
            self.emit = emit
            if text:
                emit(Piece("".join(text)))
        if guesses:
            self.guessing().record(ngram, len(guesses), held)
        return held

    def finish(self, reason: str) -> None:
        if reason != "stop_sequence":
            self._text(self.stops.flush())
        if self.calls is not None:
            self._send(self.calls.flush())
            if self.calls.calls and reason == "stop":
                reason = "tool_calls"
        hidden = None
        if self.hidden:
            token, values = self.hidden
            hidden = HiddenStates(self.model.layers, len(values), token, values)
        self.emit(Finish(reason, len(self.prompt), self.produced, self.cached_tokens, self.stops.matched, hidden))
        self.done, self.reason = True, reason

    def _text(self, text: str) -> None:
        """Emit the reply's text, with any tool calls in it read out as calls."""
        self._send(self.calls.feed(text) if self.calls else [text])

    def _watch_for_call(self, text: str) -> None:
        """Hold a call to the tools' grammar from the moment its opening tag is written."""
        self.written = (self.written + text)[-64:]
        if OPEN in self.written:
            after = self.written.split(OPEN, 1)[1]  # a token may carry text past the tag
            self.constraint = Constraint(self.model.grammar_tokenizer, self.calls_grammar)
            self.in_call, self.written = True, ""
            for token in self.model.tokenizer.encode(after) if after else ():
                self.constraint.take(token)

    def _send(self, parts: list) -> None:
        for part in parts:
            if part:  # empty text is left out
                self.emit(Piece(part) if isinstance(part, str) else part)

    def fail(self, error: ProviderError) -> None:
        self.emit(Failure(error))
        self.done, self.reason = True, "error"
