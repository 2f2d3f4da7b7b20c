"""Weights that batch (RILL_WEIGHTS): a GGUF whose type has no batched x86 kernel in llama.cpp
(Q5_0, Q5_1, Q3_K, and Q4_1 where Rill's build does not repack it: each row of a batch costs most
of what one row alone costs) is converted once to a type that llama.cpp's CPU backend batches on
x86 (repacked, or through its tinyBLAS kernels), cached under RILL_CACHE_DIR/weights. `auto` tries
AUTO_TYPES in turn and keeps the first that holds the original's quality (perplexity on a fixed
text, the original's greedy answers to fixed questions) and is faster at batch 8 without being much
slower alone, timed at load as the transformers engine picks its dtype (the measures are kept
beside the file: once per machine); `as-is` runs the file as it is; a type name converts to it and
checks nothing.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import llama_cpp as C
import numpy as np

log = logging.getLogger(__name__)

TYPES = {"q4_0": C.LLAMA_FTYPE_MOSTLY_Q4_0, "q4_k_m": C.LLAMA_FTYPE_MOSTLY_Q4_K_M, "q8_0": C.LLAMA_FTYPE_MOSTLY_Q8_0}
CHOICES = ("auto", "as-is", *TYPES)
# GGUF file types (general.file_type) whose weights no batched x86 kernel takes (no repacking, no
# llamafile tinyBLAS path in llama.cpp's CPU backend): what `auto` converts. Q4_1 only where Rill's
# build does not repack it (unbatched(): no AVX2 or F16C, or an AMX build, whose weights stay in
# plain buffers: there Q4_1 goes two rows by two columns at best, about 0.78x the time an output).
UNBATCHED = {C.LLAMA_FTYPE_MOSTLY_Q4_1: "Q4_1", C.LLAMA_FTYPE_MOSTLY_Q5_0: "Q5_0", C.LLAMA_FTYPE_MOSTLY_Q5_1: "Q5_1",
             C.LLAMA_FTYPE_MOSTLY_Q3_K_S: "Q3_K_S", C.LLAMA_FTYPE_MOSTLY_Q3_K_M: "Q3_K_M",
             C.LLAMA_FTYPE_MOSTLY_Q3_K_L: "Q3_K_L"}
# Q4_K_M first: about the original's size and quality, and batched (repacked) on AVX2 and AVX512;
# Q8_0 where that loses too much: near-lossless, but half again the bytes to read alone.
AUTO_TYPES = ("q4_k_m", "q8_0")

# The bounds a conversion is kept within (auto): perplexity on TEXT at most MAX_PERPLEXITY_RATIO
# times the original's; the converted model's top token equal to the original's at MIN_AGREEMENT of
# the positions of the original's greedy answers to QUESTIONS; a decode step of 8 rows
# MIN_BATCHED_SPEEDUP times faster, and of one row at most MAX_ALONE_SLOWDOWN times slower.
MAX_PERPLEXITY_RATIO = 1.06
MIN_AGREEMENT = 0.90
MIN_BATCHED_SPEEDUP = 1.2
MAX_ALONE_SLOWDOWN = 1.1
TEXT = (
    "The river rises in the hills to the north and flows south through farmland before it reaches the "
    "old city. For centuries the city depended on it for water, for trade and for power: mills lined "
    "its banks, and barges carried grain, timber and stone down to the sea. In the nineteenth century "
    "the railway took most of the trade, and the mills closed one by one. The river was polluted for a "
    "long time, but in recent decades it has been cleaned, and fish have returned. Today people walk and "
    "cycle along the old towpaths, and the warehouses by the water have become flats, shops and museums. "
    "Every summer the city holds a festival on the river, with boat races, music and fireworks."
)
QUESTIONS = ("What is the capital of France?", "Write a haiku about the sea.",
             "Explain in one sentence what a CPU does.", "List three colors.",
             "How do I reverse a list in Python?")
ANSWER_TOKENS = 24


@dataclass
class Check:
    """What a conversion was measured at, kept beside the converted file."""
    perplexity: float  # of the converted file on TEXT
    original_perplexity: float
    agreement: float  # share of the original's greedy answer tokens that are the converted model's top token
    step_ms: dict  # {"original": {rows: ms}, "converted": {rows: ms}}

    def holds(self) -> bool:
        return (self.perplexity <= self.original_perplexity * MAX_PERPLEXITY_RATIO
                and self.agreement >= MIN_AGREEMENT)

    def faster(self) -> bool:
        original, converted = self.step_ms["original"], self.step_ms["converted"]
        return (converted["8"] * MIN_BATCHED_SPEEDUP <= original["8"]
                and converted["1"] <= original["1"] * MAX_ALONE_SLOWDOWN)

    def summary(self) -> str:
        original, converted = self.step_ms["original"], self.step_ms["converted"]
        return (f"perplexity {self.perplexity:.2f} vs {self.original_perplexity:.2f}, top-token agreement "
                f"{self.agreement:.0%}, a decode step {converted['1']:.1f} vs {original['1']:.1f} ms alone and "
                f"{converted['8']:.1f} vs {original['8']:.1f} ms for 8 rows")


def unbatched(file_type: int) -> str | None:
    """The name of a GGUF file type (a llama_ftype) whose weights do not batch on this build, else None."""
    from .llama_cpp import repacks_q4_1

    if file_type == C.LLAMA_FTYPE_MOSTLY_Q4_1 and repacks_q4_1():
        return None
    return UNBATCHED.get(file_type)


def converted_path(source: Path, kind: str, cache_dir: Path) -> Path:
    stat = source.stat()
    return cache_dir / "weights" / f"{source.stem}-{stat.st_size}.{kind}.gguf"


def convert(source: Path, kind: str, cache_dir: Path, threads: int) -> Path:
    """The file in type `kind`, made once (written aside, then renamed: never half a file)."""
    target = converted_path(source, kind, cache_dir)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    params = C.llama_model_quantize_default_params()
    params.ftype, params.nthread, params.allow_requantize = TYPES[kind], threads, True
    log.warning("converting %s to %s, once (RILL_WEIGHTS) ...", source.name, kind.upper())
    started = time.perf_counter()
    if C.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params)) != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"llama.cpp could not convert {source} to {kind}")
    partial.rename(target)
    log.warning("%s written in %.1f s", target.name, time.perf_counter() - started)
    return target


class Probe:
    """One model loaded with a small context: perplexity, greedy answers, decode step times."""

    def __init__(self, source: Path, threads: int):
        from .llama_cpp import Vocab, load_model, new_context

        self.handle = load_model(source, gpu=False)
        self.vocab = Vocab(C.llama_model_get_vocab(self.handle))
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab.vocab)
        self.ctx = new_context(self.handle, 1024, 8, 512, threads)
        self.memory = C.llama_get_memory(self.ctx)
        self.batch = C.llama_batch_init(512, 0, 1)

    def close(self) -> None:
        C.llama_batch_free(self.batch)
        C.llama_free(self.ctx)
        C.llama_model_free(self.handle)

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """(token, position, sequence, wants logits) each."""
        from .llama_cpp import decode, put_token

        for n, entry in enumerate(entries):
            put_token(self.batch, n, *entry)
        self.batch.n_tokens = len(entries)
        decode(self.ctx, self.batch)

    def _logits(self, index: int) -> np.ndarray:
        return np.ctypeslib.as_array(C.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,))

    def perplexity(self, text: str) -> float:
        ids = self.vocab.encode(text, add_special=True)[:512]
        C.llama_memory_clear(self.memory, True)
        self._decode([(t, i, 0, True) for i, t in enumerate(ids)])
        total = 0.0
        for i, following in enumerate(ids[1:]):
            logits = self._logits(i).astype(np.float64)
            top = logits.max()
            total += top + np.log(np.exp(logits - top).sum()) - logits[following]
        return float(np.exp(total / (len(ids) - 1)))

    def answer(self, prompt: list[int], tokens: int) -> list[int]:
        C.llama_memory_clear(self.memory, True)
        self._decode([(t, i, 0, i == len(prompt) - 1) for i, t in enumerate(prompt)])
        out, index = [], len(prompt) - 1
        for n in range(tokens):
            token = int(np.argmax(self._logits(index)))
            out.append(token)
            self._decode([(token, len(prompt) + n, 0, True)])
            index = 0
        return out

    def forced(self, prompt: list[int], answer: list[int]) -> list[int]:
        """The model's own top token at each position of `answer`, fed the answer (teacher forcing):
        where two models' greedy answers part, every later token would differ for that alone."""
        C.llama_memory_clear(self.memory, True)
        ids = prompt + answer[:-1]
        self._decode([(t, i, 0, i >= len(prompt) - 1) for i, t in enumerate(ids)])
        return [int(np.argmax(self._logits(len(prompt) - 1 + n))) for n in range(len(answer))]

    def step_ms(self, rows: int, steps: int = 8) -> float:
        """The fastest of a few decode steps of `rows` sequences: the least disturbed by anything else."""
        C.llama_memory_clear(self.memory, True)
        self._decode([(1 + i, i, seq, False) for seq in range(rows) for i in range(16)])
        fastest = float("inf")
        for n in range(steps):
            started = time.perf_counter()
            self._decode([(100 + n, 16 + n, seq, True) for seq in range(rows)])
            fastest = min(fastest, time.perf_counter() - started)
        return fastest * 1000


def measure(original: Path, converted: Path, prompts: list[list[int]], threads: int) -> Check:
    """Both files, one after the other, each alone in memory; step times alternate between them."""
    answers, perplexities, times = {}, {}, {"original": {}, "converted": {}}
    for _ in range(2):  # twice, alternating: a noisy moment falls on both
        for name, path in (("original", original), ("converted", converted)):
            probe = Probe(path, threads)
            try:
                if name not in perplexities:
                    perplexities[name] = probe.perplexity(TEXT)
                    answers[name] = ([probe.answer(p, ANSWER_TOKENS) for p in prompts] if name == "original"
                                     else [probe.forced(p, a) for p, a in zip(prompts, answers["original"])])
                for rows in (1, 8):
                    ms = probe.step_ms(rows)
                    times[name][str(rows)] = min(ms, times[name].get(str(rows), ms))
            finally:
                probe.close()
    pairs = [(a, b) for x, y in zip(answers["original"], answers["converted"]) for a, b in zip(x, y)]
    agreement = sum(a == b for a, b in pairs) / len(pairs)
    return Check(perplexities["converted"], perplexities["original"], agreement, times)


def checked(source: Path, kind: str, cache_dir: Path, threads: int,
            questions: Callable[[], list[list[int]]]) -> tuple[Check, Path]:
    """The conversion and its measures, made once per machine: servers starting together wait for
    the first (each measuring beside the others would time the others' work, and could decide
    differently). `questions`: QUESTIONS in the model's chat template, as token ids."""
    from filelock import FileLock

    target = converted_path(source, kind, cache_dir)
    record = target.with_suffix(".check.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.with_suffix(".lock")):
        if not record.exists():
            convert(source, kind, cache_dir, threads)
            check = measure(source, target, questions(), threads)
            partial = record.with_suffix(f".partial-{os.getpid()}")
            partial.write_text(json.dumps(asdict(check)))
            partial.rename(record)
        return Check(**json.loads(record.read_text())), target


def choose(source: Path, file_type: int, setting: str, cache_dir: Path, threads: int,
           questions: Callable[[], list[list[int]]]) -> tuple[Path, str]:
    """The file to load and why. `file_type`: its general.file_type (a llama_ftype); `questions`:
    made only where a conversion is measured."""
    if setting not in CHOICES:
        raise ValueError(f"RILL_WEIGHTS={setting!r} is not one of {', '.join(CHOICES)}")
    if setting == "as-is":
        return source, "as is"
    if setting != "auto":
        return convert(source, setting, cache_dir, threads), f"{setting.upper()} (RILL_WEIGHTS)"
    original = unbatched(file_type)
    if original is None:
        return source, "as is (its type batches)"
    refused = []
    for kind in AUTO_TYPES:
        check, target = checked(source, kind, cache_dir, threads, questions)
        if check.holds() and check.faster():  # made again if the cache lost the file but kept its measures
            kept = f"{kind.upper()}, converted from {original}: {check.summary()}"
            return convert(source, kind, cache_dir, threads), "; ".join([kept, *refused])
        target.unlink(missing_ok=True)  # its measures stay: not converted and measured again
        refused.append(f"{kind.upper()} not kept: {check.summary()}")
    return source, f"{original} as is ({'; '.join(refused)})"
