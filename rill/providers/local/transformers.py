"""The transformers engine: Hugging Face model directories, GPUs, and GGUF where llama.cpp is missing.

A GGUF file is dequantized once into `<cache_dir>/models/<name>/` as safetensors (30-50 s, with a
progress bar); later starts load that directory in about a second.

Continuous batching: decoding one stream is bound by reading the weights from memory; a step for
eight rows reads them once. New turns are prefilled together (left-padded) between decode steps
and then join the batch; finished or cancelled rows leave it at once. The KV cache is one
left-padded tensor per layer with a 0/1 attention mask; each row's position ids count only its
real tokens. Attention reads it by runs of neighbouring rows, each run from its earliest real
column (row_runs), so short rows beside a long one do not read its length in padding. A long
prompt, and the rest of a prompt whose start a kept conversation's cache already holds, is
prefilled in slices packed into the decode steps' forward passes (PackedStep).

On a CPU the dtype is picked by timing decode steps at load: bfloat16 wins at batch 1 on most
machines, but without native bf16 (AVX2 only) float32 wins at batch 8 (87 against 55 tok/s). When
each wins somewhere, both weight copies stay and every step uses the faster one for its batch size.
Loading, timing and every step run on the engine's one thread: once a second thread has used
torch's OpenMP pool, libgomp's threads outnumber the cores, stop spinning between parallel regions,
and bfloat16's many short ones run at half speed.
"""
from __future__ import annotations

import io
import logging
import shutil
import time
from functools import cached_property
from pathlib import Path

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from ...runtime import deliver_held
from ..base import Image
from .choice import pick_device
from .contract import Media, image_mark
from .embedding import pool, right_padded
from .options import LocalOptions
from .pacer import PrefillPacer
from .prefix_cache import FINISHED, Kept, PrefixCache, template_closing
from .row import Row
from . import speculation

log = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
          "float32": torch.float32, "fp32": torch.float32}
TIMED_BATCHES = (1, 2, 4, 8, 16)  # batch sizes timed at load when the dtype is "auto" on a CPU
TIMING_ROUNDS = 3  # each size timed up to this many times, the dtypes alternating
CLEAR_MARGIN = 1.3  # one dtype this much faster at a size after two rounds: not timed a third time
MIXED_GAIN = 1.15  # bfloat16 alone this much faster than float32: worth a second copy of the weights


def prepare_model_dir(source: Path, cache_dir: Path, name: str) -> Path:
    """Return a directory transformers loads quickly; convert a GGUF file into the cache first."""
    if source.is_dir():
        return source
    target = cache_dir / "models" / name
    if (target / ".complete").exists():
        return target
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s into %s (one time, about a minute)", source, target)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tqdm(total=4, desc=f"Preparing {name}", unit="step") as bar:
        bar.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        bar.update()
        bar.set_postfix_str("weights")
        model = AutoModelForCausalLM.from_pretrained(
            str(source.parent), gguf_file=source.name, dtype=torch.float32
        )
        bar.update()
        # A GGUF-loaded model refuses to save while it still looks quantized.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        bar.set_postfix_str("saving")
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        bar.update()
        (staging / ".complete").write_text(str(source))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        bar.set_postfix_str("done")
        bar.update()
    return target


class HFModel:
    engine = "transformers"
    reads_images = False  # set at load: a vision model's images are embedded with its prompt (embed)

    def __init__(self, source: Path, options: LocalOptions):
        self.source, self.name, self.cache_dir = source, options.name, options.cache_dir
        self.mmproj = options.mmproj
        self.device = pick_device(options.device)
        self.dtype_name = options.dtype
        self.threads = options.threads
        self.context_tokens = options.context_tokens
        self.max_batch = options.max_batch
        self.prefill_chunk = options.prefill_chunk
        self.speculate = options.speculate
        self.cache_tokens = options.cache_tokens  # finished conversations' caches kept, in tokens
        self.copies: dict[torch.dtype, object] = {}  # the weights, in each dtype kept
        self.dtype_for: dict[int, torch.dtype] = {}  # batch size -> the faster copy (both kept)
        self._closing: list[int] | None = None  # closing()'s tokens, made with its first call

    def load(self) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        if self.mmproj:
            raise RuntimeError("RILL_MMPROJ_PATH is a projector for the llama.cpp engine; the transformers engine "
                               "reads a vision model from its own directory (RILL_MODEL_PATH)")
        if self.threads:
            torch.set_num_threads(self.threads)
        directory = prepare_model_dir(self.source, self.cache_dir, self.name)
        # A vision model (SmolVLM, Idefics3 and the like) has a vision config and a processor.
        self.reads_images = hasattr(AutoConfig.from_pretrained(str(directory)), "vision_config")
        if self.reads_images:
            self.processor = AutoProcessor.from_pretrained(str(directory))
            self.tokenizer = self.processor.tokenizer
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        first = self._first_dtype()
        loader = AutoModelForImageTextToText if self.reads_images else AutoModelForCausalLM
        self.model = loader.from_pretrained(str(directory), dtype=first, attn_implementation=ATTENTION)
        self.model.to(self.device).eval()
        self.copies = {first: self.model}
        if self.device == "cpu" and self.dtype_name == "auto":
            self._pick_cpu_dtype()
        self.config = self.model.config.get_text_config()  # what the caches are made for
        self.layers = self.config.num_hidden_layers
        self.n_vocab = self.config.vocab_size
        window = getattr(self.config, "max_position_embeddings", None) or self.context_tokens
        self.context_tokens = min(self.context_tokens, window)
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.stop_ids = {i for i in [*eos, self.tokenizer.eos_token_id] if i is not None}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.stop_ids)

    @cached_property
    def grammar_tokenizer(self):
        from llguidance.hf import from_tokenizer

        return from_tokenizer(self.tokenizer, n_vocab=self.n_vocab, eos_token=sorted(self.stop_ids))

    def _first_dtype(self) -> torch.dtype:
        if self.dtype_name != "auto":
            return DTYPES[self.dtype_name]
        if self.device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.device == "mps":
            return torch.float16
        return torch.float32  # the CPU's pick comes from timing, next

    @torch.inference_mode()
    def _pick_cpu_dtype(self) -> None:
        """Time a few decode steps in float32 and bfloat16 at each batch size in use: twice, and where
        the two are within CLEAR_MARGIN of each other TIMING_ROUNDS times in all, alternating (the
        fastest kept: noise only ever slows a step down). The largest size's winner takes every size
        from the smallest one from which it wins throughout; the smaller sizes take the other dtype
        only where it is MIXED_GAIN faster alone: two copies cost memory, and a batch crossing
        between them converts its cache. (Which dtype wins where depends on the CPU: without native
        bf16 bfloat16 wins alone and float32 batched; with it, the other way round.)"""
        import copy

        bf16 = self.copies[torch.bfloat16] = copy.deepcopy(self.model).to(torch.bfloat16)
        sizes = sorted({b for b in TIMED_BATCHES if b < self.max_batch} | {self.max_batch})
        timings: dict[torch.dtype, dict[int, float]] = {torch.float32: {}, torch.bfloat16: {}}
        for b in sizes:
            for n in range(TIMING_ROUNDS):
                for dtype, weights in ((torch.float32, self.model), (torch.bfloat16, bf16)):
                    timings[dtype][b] = min(self._time_steps(weights, b), timings[dtype].get(b, float("inf")))
                slow, fast = sorted(t[b] for t in timings.values())[::-1]
                if n and slow > fast * CLEAR_MARGIN:
                    break
        winner = {b: min(timings, key=lambda d: timings[d][b]) for b in sizes}
        large = winner[sizes[-1]]
        crossover = next(b for b in sizes if all(winner[c] == large for c in sizes if c >= b))
        small = winner[sizes[0]]
        other_pays = small != large and timings[large][1] >= timings[small][1] * MIXED_GAIN
        self.dtype_for = {b: large if b >= crossover or not other_pays else small for b in sizes}
        winners = set(self.dtype_for.values())
        self.copies = {d: m for d, m in self.copies.items() if d in winners}
        self.model = self.copies[self.dtype_for[1]]
        log.warning("dtype by timing (ms per decode step): %s -> %s", {
            str(d).removeprefix("torch."): {b: round(t * 1000, 1) for b, t in by.items()} for d, by in timings.items()},
            self.describe()["dtype"])

    def _time_steps(self, model, rows: int, context: int = 16, steps: int = 5) -> float:
        """The fastest of a few decode steps: the least disturbed by whatever else runs. A short
        context: a decode step's cost is the weights', and a long one's prefill is slow in bfloat16."""
        cache = DynamicCache(config=model.config)
        ids = torch.ones(rows, context, dtype=torch.long)
        model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        fastest = float("inf")
        for _ in range(steps):
            started = time.perf_counter()
            model(input_ids=ids[:, :1], past_key_values=cache, use_cache=True, logits_to_keep=1)
            fastest = min(fastest, time.perf_counter() - started)
        return fastest

    def model_for(self, rows: int, current: torch.dtype | None = None):
        """The weight copy that decodes `rows` rows faster. A batch on the larger sizes' copy
        (`current`) keeps it until it shrinks to half the size where that copy starts to win: a batch
        whose rows come and go around that size would otherwise convert its cache back and forth."""
        if len(self.copies) == 1:
            return self.model
        size = max((b for b in self.dtype_for if b <= rows), default=1)
        wanted = self.dtype_for[size]
        larger = self.dtype_for[max(self.dtype_for)]
        if current == larger != wanted and rows * 2 > min(b for b, d in self.dtype_for.items() if d == larger):
            wanted = larger
        return self.copies[wanted]

    @torch.inference_mode()
    def pooled(self, inputs: list[list[int]]) -> list:
        """Right-padded to one length and run together: a causal model's real tokens never attend to
        the padding after them, so each vector is the one the input gives alone."""
        ids, mask = right_padded(inputs, self.pad_id, self.device)
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return pool(out.hidden_states[-1], mask)  # the final norm's output, mean-pooled

    def unload(self) -> None:
        # torch frees the weights with their last reference; their dtypes stay for describe(), which a
        # request thread may be reading
        self.model, self.copies = None, dict.fromkeys(self.copies)

    def describe(self) -> dict:
        dtypes = "+".join(str(d).removeprefix("torch.") for d in self.copies)
        return {"engine": self.engine, "device": self.device, "dtype": dtypes}

    @property
    def template_source(self) -> str:
        return self.tokenizer.chat_template or ""

    def set_template(self, source: str) -> None:
        self.tokenizer.chat_template = source
        if self.reads_images:
            self.processor.chat_template = source  # what renders a prompt with images
        self._closing = None

    def closing(self) -> list[int]:
        """prefix_cache.template_closing, made once for the template."""
        if self._closing is None:
            self._closing = template_closing(
                lambda chat: self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False),
                lambda text: self.tokenizer.encode(text, add_special_tokens=False))
        return self._closing

    def chat_tokens(self, chat: list[dict], tools: list[dict] | None = None) -> list[int]:
        return self.tokenizer.apply_chat_template(chat, tools=tools, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"]

    def chat_media(self, chat: list[dict], tools: list[dict] | None, images: list[Image]) -> tuple[list[int], Media]:
        from PIL import Image as Pillow

        text = self.processor.apply_chat_template(chat, tools=tools, add_generation_prompt=True)
        pictures = [Pillow.open(io.BytesIO(image.data)).convert("RGB") for image in images]
        inputs = dict(self.processor(text=text, images=[pictures], return_tensors="pt"))
        ids = inputs.pop("input_ids")[0].tolist()
        inputs.pop("attention_mask", None)
        marker = self.processor.image_token
        each = [self.processor(text=marker, images=[[p]])["input_ids"][0].count(self.image_token_id) for p in pictures]
        return ids, Media(inputs, image_key(ids, self.image_token_id, [i.sha256 for i in images], each))

    @property
    def image_token_id(self) -> int:
        return self.model.config.image_token_id

    @torch.inference_mode()
    def embed(self, row: Row) -> torch.Tensor:
        """A prompt as the text model takes it, [tokens, width]: its ids' embeddings, the image
        tokens' replaced by what the vision encoder makes of each image."""
        ids = torch.tensor([row.prompt], device=self.device)
        embeds = self.model.get_input_embeddings()(ids)
        if row.media is not None:
            pixels = {k: v.to(self.device) for k, v in row.media.inputs.items()}
            pixels["pixel_values"] = pixels["pixel_values"].to(self.model.dtype)
            features = self.model.model.get_image_features(**pixels, return_dict=True).pooler_output
            features = torch.cat(list(features)) if isinstance(features, (list, tuple)) else features
            where = (ids == self.image_token_id).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(where, features.to(embeds.dtype))
        return embeds[0]

    def new_batch(self, max_rows: int) -> HFBatch:
        return HFBatch(self)


def image_key(ids: list[int], image_token: int, hashes: list[str], counts: list[int]) -> list[int]:
    """The ids with each image's tokens (counts[i] of them, in order) replaced by its mark."""
    marks = [image_mark(sha) for sha, count in zip(hashes, counts) for _ in range(count)]
    key, taken = [], iter(marks)
    for token in ids:
        key.append(next(taken, -1) if token == image_token else token)
    return key


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
        """Hold these states, with room to grow (used also after rows leave)."""
        self.stack([(keys, values)], extra)

    def adopt(self, key_room: torch.Tensor, value_room: torch.Tensor, length: int) -> None:
        """Take this room as it is, its first `length` positions holding the states already."""
        self.lazy_initialization(key_room, value_room)
        self.key_room, self.value_room = key_room, value_room
        self.keys, self.values = key_room[:, :, :length], value_room[:, :, :length]

    def stack(self, parts: list[tuple[torch.Tensor, torch.Tensor]], extra: int = 0) -> None:
        """Hold these parts' rows one after another, each left-padded with zeros to the longest
        (rows joining the batch): written once into the new room, however long the longest."""
        length = max(keys.shape[-2] for keys, _ in parts)
        rows = sum(keys.shape[0] for keys, _ in parts)
        first = parts[0][0]
        # Room to grow by half: doubling it wrote twice the memory when a 4,000-token row joined.
        shape = (rows, first.shape[1], max(64, length + extra + (length + extra) // 2), first.shape[-1])
        self.key_room, self.value_room = first.new_empty(shape), first.new_empty(shape)
        row = 0
        for keys, values in parts:
            end, start = row + keys.shape[0], length - keys.shape[-2]
            for room, states in ((self.key_room, keys), (self.value_room, values)):
                room[row:end, :, :start] = 0  # padding is read, masked: never garbage (NaN times 0 is NaN)
                room[row:end, :, start:length] = states
            row = end
        self.keys, self.values = self.key_room[:, :, :length], self.value_room[:, :, :length]


def new_cache(config) -> DynamicCache:
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() for _ in cache.layers]
    return cache


class Slice:
    """A piece of a prompt fed in a PackedStep: `size` tokens from position `fed`, into the row's
    own cache."""

    def __init__(self, row: Row, size: int):
        self.row, self.fed, self.size = row, row.fed, size
        end = self.fed + size
        self.mask = (torch.arange(end)[None, :] <= torch.arange(self.fed, end)[:, None])[None, None]


class PackedStep:
    """One forward pass for the decoding rows' next tokens and slices of prompts: the tokens go in as
    one packed sequence (the weights are read once, as for a bigger batch), and attention splits
    them again: each decoding row attends to its row of the batch's cache, each slice to its
    prompt's own cache. A second forward pass for a slice cost as much as the decode step itself on
    a CPU, which left almost no room for prompt tokens within the stall bound."""

    def __init__(self, main: DynamicCache | None, rows: int, mask: torch.Tensor | None, slices: list[Slice]):
        self.main, self.rows, self.slices = main, rows, slices
        self.decode_mask = mask[:, None, None, :].bool() if rows else None

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer: int, *args, **kwargs):
        """The model's cache hook: each token's keys and values go to the cache they belong to."""
        if self.rows:
            self.main.layers[layer].update(keys[0, :, :self.rows].transpose(0, 1).unsqueeze(2),
                                           values[0, :, :self.rows].transpose(0, 1).unsqueeze(2))
        start = self.rows
        for piece in self.slices:
            end = start + piece.size
            piece.row.own_cache.layers[layer].update(keys[:, :, start:end], values[:, :, start:end])
            start = end
        return keys, values

    def attend(self, module, query: torch.Tensor, runs: list[Run], **kwargs) -> tuple[torch.Tensor, None]:
        outputs, layer = [], module.layer_idx
        if self.rows:  # [1, heads, rows, dim] -> one query per row: [rows, heads, 1, dim]
            main = self.main.layers[layer]
            out, _ = masked_attention(module, query[0, :, :self.rows].transpose(0, 1).unsqueeze(2), main.keys,
                                      main.values, self.decode_mask.to(query.device), runs, **kwargs)
            outputs.append(out.reshape(1, self.rows, *out.shape[2:]))
        start = self.rows
        for piece in self.slices:
            own = piece.row.own_cache.layers[layer]
            out, _ = masked_attention(module, query[:, :, start:start + piece.size], own.keys, own.values,
                                      piece.mask.to(query.device), [(0, 1, 0)], **kwargs)
            outputs.append(out)
            start += piece.size
        return torch.cat(outputs, dim=1), None


Run = tuple[int, int, int]  # rows [first, end) of the cache, reading its columns from the third on
RUN_COST = 512  # a run's own attention calls cost about as much as this many (row, column) reads


def row_runs(mask: torch.Tensor) -> list[Run]:
    """Neighbouring rows grouped so that each group reads the cache only from its earliest real
    column: a row joining with a 4,000-token prompt would otherwise have every short row read
    4,000 columns of padding each step (5x their step). Fewest reads plus RUN_COST per group,
    by dynamic programming over the cut points (16 rows: 136 choices)."""
    width = mask.shape[1]
    starts = (mask.cumsum(dim=1) == 0).sum(dim=1).tolist()  # each row's leading padding
    best, cut = [0] + [float("inf")] * len(starts), [0] * (len(starts) + 1)
    for end in range(1, len(starts) + 1):
        first = width
        for begin in range(end - 1, -1, -1):
            first = min(first, starts[begin])
            cost = best[begin] + (end - begin) * (width - first) + RUN_COST
            if cost < best[end]:
                best[end], cut[end] = cost, begin
    found, end = [], len(starts)
    while end:
        begin = cut[end]
        found.append((begin, end, min(starts[begin:end])))
        end = begin
    return found[::-1]


def masked_attention(module, query, key, value, mask, runs: list[Run], scaling=None, **kwargs):
    """SDPA over each run of rows and its columns. The key and value heads go in unrepeated
    (`enable_gqa`): transformers repeats them for every query head when a row has more than one
    query (speculation's guesses), copying the whole cache each layer."""
    outputs = [torch.nn.functional.scaled_dot_product_attention(
        query[a:b], key[a:b, :, start:], value[a:b, :, start:], attn_mask=mask[a:b, ..., start:], scale=scaling,
        enable_gqa=key.shape[1] != query.shape[1]) for a, b, start in runs]
    return torch.cat(outputs).transpose(1, 2).contiguous(), None


def attention(module, query, key, value, attention_mask, packed: PackedStep | None = None,
              runs: list[Run] | None = None, **kwargs):
    """A PackedStep's split attention when the forward pass carries one; a decode step's over its
    runs of rows; else (a prompt's prefill) SDPA as transformers calls it."""
    if packed is not None:
        return packed.attend(module, query, runs, **kwargs)
    if runs is not None and attention_mask is not None:
        return masked_attention(module, query, key, value, attention_mask, runs, **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


ATTENTION = "rill_packed"
AttentionInterface.register(ATTENTION, attention)
AttentionMaskInterface.register(ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


class HFBatch:
    """Rows decoded together. Short prompts are prefilled together when they join (ADMIT_TOKENS of
    prompt at most between two steps); a longer one, while others stream, is prefilled in slices
    (as many prompt tokens a step as pacer.PrefillPacer allows, shared by the prompts waiting in
    arrival order, in the decode step's forward pass) in a cache of its own and merged in when done,
    so the running rows never wait for a whole long prompt. Finished turns' caches stay
    (model.cache_tokens in all): a follow-up turn starts from the longest shared prefix and
    prefills only the rest, the same way (several follow-ups arriving together: in one step)."""

    ADMIT_TOKENS = 1024
    # Positions free after a kept conversation (its reply grows the room): the follow-up that goes on
    # from all of it takes the room as its own cache, so its first token waits for no copy of the
    # conversation (a 1,000-token chat's took 3-5 ms, 10-35 ms beside the server's thread).
    FOLLOW_UP_ROOM = 64

    def __init__(self, model: HFModel):
        self.model = model
        self.rows: list[Row] = []  # every row in the batch
        self.decoding: list[Row] = []  # the rows in self.cache, in its order
        self.prefilling: list[Row] = []  # long prompts still being prefilled, in arrival order
        self.pacer = PrefillPacer(model.prefill_chunk)
        self.cost = speculation.StepCost()  # of a decode step, for its rows x positions
        self.lately = speculation.Lately()  # what guesses did in its rows: a new row's prior
        self.guesses = (0, 0)
        self.cache: DynamicCache | None = None
        self.dtype: torch.dtype | None = None  # of the weight copy the last forward pass used
        self.mask: torch.Tensor | None = None  # [decoding rows, cached positions], 1 = a real token
        self.runs: list[Run] | None = None  # the rows' groups for attention, from the mask's padding
        self.kept = PrefixCache(model.cache_tokens)  # finished conversations: each layer's keys and values, with room

    def can_admit(self, row: Row, newcomers: list[Row]) -> bool:
        return not newcomers or sum(len(r.prompt) for r in newcomers) + len(row.prompt) <= self.ADMIT_TOKENS

    def close(self) -> None:
        self.rows, self.decoding, self.prefilling, self.cache, self.mask, self.runs = [], [], [], None, None, None
        self.kept.clear()

    def _forward(self, rows: list[Row], tokens: int, keep: list[int] | None = None, guesses: dict | None = None,
                 **inputs) -> list[int]:
        """Run the model (the weight copy for `tokens` tokens at once) and feed each row its logits:
        from its last position (and from its guesses', which end each row's input: speculation.py),
        or with a packed sequence from position `keep[i]`. Returns how many guesses each row kept.
        The tokens held back since the last step go out first (runtime.held_deliveries)."""
        deliver_held()
        model = self.model.model_for(tokens, self.dtype)
        self.dtype = model.dtype
        caches = inputs["past_key_values"]
        packed = isinstance(caches, PackedStep)
        for cache in [caches.main, *(piece.row.own_cache for piece in caches.slices)] if packed else [caches]:
            if cache is not None and cache.layers[0].is_initialized and cache.layers[0].keys.dtype != model.dtype:
                for layer in cache.layers:  # the batch crossed to the other weight copy
                    layer.set(layer.keys.to(model.dtype), layer.values.to(model.dtype))
        want_hidden = any(r.options.hidden_states for r in rows)
        inputs = {k: v.to(self.model.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        if "inputs_embeds" in inputs:
            inputs["inputs_embeds"] = inputs["inputs_embeds"].to(model.dtype)
        guesses = guesses or {}
        width = speculation.width(guesses)
        # Only the positions that pick a token need logits (the others would cost a vocabulary-sized
        # matmul each); float32 because CPU argmax and softmax are several times faster.
        out = model(**inputs, use_cache=True, output_hidden_states=want_hidden,
                    logits_to_keep=width if keep is None else torch.tensor(keep, dtype=torch.long, device=self.model.device))
        if not rows:
            return []
        last = out.hidden_states[-1] if want_hidden else None
        if keep is None:  # [rows, positions, ...]; a row's own positions first, then padding
            logits, hidden = out.logits[:, -width:], last[:, -width:] if want_hidden else None
        else:
            logits, hidden = out.logits[0, :, None], last[0, keep, None] if want_hidden else None
        logits = logits.float().cpu().numpy()  # numpy's argmax over a vocabulary: a tenth of torch's
        held = []
        for i, row in enumerate(rows):
            guess, ngram = guesses.get(row, ([], 0))
            if row.done:
                held.append(0)
                continue
            held.append(row.take(guess, ngram, lambda j, i=i, row=row: (
                logits[i, j], hidden[i, j].float().tolist() if want_hidden and row.options.hidden_states else None)))
        return held

    @torch.inference_mode()
    def add(self, rows: list[Row]) -> None:
        """Prefill short newcomers together now; queue long ones for slices while others stream.
        Newcomers take the place of finished chats' closings: those are kept as they are (a chat's
        next turn prefills its closing itself)."""
        for done in [r for r in self.rows if r.done]:
            done.closing = []
        self.drop_done()
        chunk = self.model.prefill_chunk
        for row in rows:
            row.lately = self.lately
            self._start_from_prefix(row, rows)
        now = [r for r in rows if r.own_cache is None and (len(r.prompt) <= chunk or not self.decoding)]
        self.prefilling += [r for r in rows if r not in now]
        self.rows += rows
        if now:
            width = max(len(r.prompt) for r in now)
            ids = torch.tensor([[self.model.pad_id] * (width - len(r.prompt)) + r.prompt for r in now])
            mask = torch.tensor([[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in now])
            cache = new_cache(self.model.config)
            tokens = {"input_ids": ids}
            if any(r.media for r in now):  # images: the prompts go in as embeddings
                pad = self.model.model.get_input_embeddings()(torch.tensor([self.model.pad_id], device=self.model.device))
                tokens = {"inputs_embeds": torch.stack([torch.cat([pad.expand(width - len(r.prompt), -1),
                                                                   self._embeds(r)]) for r in now])}
            self._forward(now, len(self.decoding) + len(now), attention_mask=mask,
                          position_ids=(mask.cumsum(-1) - 1).clamp(min=0), past_key_values=cache, **tokens)
            self._join(now, [(cache, mask)])

    def _embeds(self, row: Row) -> torch.Tensor:
        """The row's prompt embedded, images and all: once, however many slices it is fed in."""
        if row.embeds is None:
            row.embeds = self.model.embed(row)
        return row.embeds

    def _start_from_prefix(self, row: Row, newcomers: list[Row]) -> None:
        """Give the row the cache of the kept turn sharing the longest prefix with its prompt (at
        least the prompt's last token is prefilled again, for its logits). It takes the kept room
        (FOLLOW_UP_ROOM) only while no cache in use writes there; another follow-up, or one that ends
        the kept conversation sooner (a reply regenerated), copies what it shares."""
        shared, prefix = self.kept.find(row.key)
        if shared <= 0:
            return
        row.own_cache, row.fed, row.cached_tokens = new_cache(self.model.config), shared, shared
        if shared == len(prefix.tokens) and not self._writes_into(prefix.state, self.rows + newcomers):
            for layer, (keys, values) in zip(row.own_cache.layers, prefix.state):  # it writes after them only
                layer.adopt(keys, values, shared)
            return
        for layer, (keys, values) in zip(row.own_cache.layers, prefix.state):
            layer.lazy_initialization(keys, values)
            layer.set(keys[:, :, :shared], values[:, :, :shared])

    def _writes_into(self, kept: list[tuple[torch.Tensor, torch.Tensor]], rows: list[Row]) -> bool:
        """Whether a cache in use (the batch's, or a prompt's own until it joins) writes into this
        kept conversation's room: a row that took it and is still alone with it."""
        caches = [self.cache, *(row.own_cache for row in rows)]
        rooms = (getattr(cache.layers[0], "key_room", None) for cache in caches if cache is not None)
        return any(room is kept[0][0] for room in rooms)

    def _keep(self, index: int, row: Row) -> None:
        """Keep a finished row's cache for a follow-up turn; a kept turn it extends is dropped."""
        if not self.kept.fits(row.kv):
            return
        deliver_held()
        columns = self.mask[index].nonzero().squeeze(1)  # as many as row.kv: the tokens it keeps
        length, spare = len(columns), min(self.FOLLOW_UP_ROOM, self.kept.budget - len(row.kv))

        def roomy(states: torch.Tensor) -> torch.Tensor:
            room = states.new_empty((1, states.shape[1], length + spare, states.shape[-1]))
            room[:, :, :length] = states[index:index + 1, :, columns]
            return room

        layers = [(roomy(layer.keys), roomy(layer.values)) for layer in self.cache.layers]
        self.kept.keep(Kept(row.kv, layers, spare))

    def _join(self, rows: list[Row], parts: list[tuple[DynamicCache, torch.Tensor]]) -> None:
        """The rows' caches (each with its mask; rows in order) join the batch's, in one copy."""
        for row in rows:
            row.kv = list(row.key)  # the tokens in its row of the cache (an image's by its hash)
            row.embeds = row.media = None  # prefilled: its pixels and embeddings are not needed again
        parts = [(cache, mask.to(self.model.device)) for cache, mask in parts]
        if self.cache is not None:
            parts.insert(0, (self.cache, self.mask))
        self.cache = parts[0][0]
        if len(parts) == 1:
            self.mask = parts[0][1]
        else:  # rows one after another, left-padded to the longest, written once into the first's layers
            dtype = parts[-1][0].layers[0].keys.dtype  # the copy that prefilled newcomers suits the new size
            for layers in zip(*(cache.layers for cache, _ in parts)):
                layers[0].stack([(layer.keys.to(dtype), layer.values.to(dtype)) for layer in layers])
            width = max(mask.shape[1] for _, mask in parts)
            self.mask = torch.cat([torch.nn.functional.pad(mask, (width - mask.shape[1], 0)) for _, mask in parts])
        self.decoding += rows
        self.runs = row_runs(self.mask)

    @torch.inference_mode()
    def step(self) -> None:
        """One forward pass: the next token of every decoding row, and slices of the prompts waiting
        (as many tokens as the pacer allows while others stream)."""
        started, streaming = time.perf_counter(), len(self.decoding)
        self.guesses = (0, 0)
        size = 0
        if any(r.done and r.closing for r in self.rows):
            return self._decode_closings()
        if self.prefilling:
            size = self._step_with_slices(self.pacer.budget() if streaming else self.ADMIT_TOKENS)
        elif self._decode_step():
            return  # with guesses: not a plain decode step, which the pacer compares slices with
        if streaming:
            self.pacer.record(time.perf_counter() - started, size)

    def _next_tokens(self, guesses: dict | None = None) -> list[list[int]]:
        """Each decoding row's input: its last token and its guesses, padded to the longest (the
        padding masked out); a row that just stopped on its first token is fed padding (it leaves
        after this step)."""
        guesses = guesses or {}
        width = speculation.width(guesses)
        tokens, real = [], []
        for row in self.decoding:
            fed = [self.model.pad_id if row.done else row.last_token, *guesses.get(row, ([], 0))[0]]
            tokens.append(fed + [self.model.pad_id] * (width - len(fed)))
            real.append([1] * len(fed) + [0] * (width - len(fed)))
            row.kv.append(fed[0])
        self.mask = torch.cat([self.mask, torch.tensor(real, dtype=self.mask.dtype, device=self.mask.device)], dim=1)
        return tokens

    def _decode_step(self) -> int:
        """One token for every decoding row, and their guesses; returns how many guesses went in.
        The cells of a failed guess (and the padding beside a shorter row's) stay in the cache,
        masked, until a quarter of its columns are such."""
        guesses = self._guesses()
        tokens = self._next_tokens(guesses)
        width = len(tokens[0])
        started = time.perf_counter()
        held = self._forward(self.decoding, len(tokens) * width, guesses=guesses, input_ids=torch.tensor(tokens),
                             attention_mask=self.mask, past_key_values=self.cache, runs=self.runs,
                             position_ids=torch.tensor([[r.length + i for i in range(width)] for r in self.decoding]))
        if self.model.speculate:  # what guesses are planned on
            self.cost.record(len(tokens) * width, time.perf_counter() - started)
        self.guesses = (sum(len(g) for g, _ in guesses.values()), sum(held))
        end = self.mask.shape[1]
        for i, (row, kept) in enumerate(zip(self.decoding, held)):
            row.kv += guesses.get(row, ([], 0))[0][:kept]
            row.length += 1 + kept
            self.mask[i, end - width + 1 + kept:] = 0  # the guesses that failed, unread from now on
        if width > 1 and 4 * int((~self.mask.any(dim=0)).sum()) > self.mask.shape[1]:
            self._compact(torch.arange(len(self.decoding), device=self.mask.device))  # a quarter unread: dropped
        return self.guesses[0]

    def _guesses(self) -> dict:
        rows = [r for r in self.decoding if not r.done]
        if not self.model.speculate or not rows:
            return {}
        # Every row is padded to the longest row's guesses: the step costs rows x that width.
        return speculation.plan(rows, lambda row: row.room_to_guess(self.model.context_tokens),
                                lambda chosen: len(self.decoding) * speculation.width(chosen), self.cost)

    def _step_with_slices(self, budget: int) -> int:
        """A decode step that also prefills up to `budget` more prompt tokens, the waiting prompts'
        next slices in arrival order, in the same forward pass; returns how many it took."""
        slices = []
        for row in self.prefilling:
            if budget <= 0:
                break
            if row.own_cache is None:
                row.own_cache, row.fed = new_cache(self.model.config), 0
            slices.append(Slice(row, min(budget, len(row.prompt) - row.fed)))
            budget -= slices[-1].size
        decoding = self.decoding
        tokens = [t for t, in self._next_tokens()] if decoding else []
        positions = [r.length for r in decoding]
        keep, finishing = list(range(len(decoding))), []
        for piece in slices:
            tokens += piece.row.prompt[piece.fed: piece.fed + piece.size]
            positions += range(piece.fed, piece.fed + piece.size)
            if piece.fed + piece.size == len(piece.row.prompt):  # its last position gives its first token
                keep.append(len(tokens) - 1)
                finishing.append(piece.row)
        packed = PackedStep(self.cache, len(decoding), self.mask, slices)
        inputs = {"input_ids": torch.tensor([tokens])}
        if any(piece.row.media for piece in slices):  # images: the slices go in as embeddings
            embeds = self.model.model.get_input_embeddings()(torch.tensor(tokens, device=self.model.device))
            parts, start = [embeds[:len(decoding)]], len(decoding)
            for piece in slices:
                media = piece.row.media is not None
                parts.append(self._embeds(piece.row)[piece.fed: piece.fed + piece.size] if media
                             else embeds[start: start + piece.size])
                start += piece.size
            inputs = {"inputs_embeds": torch.cat(parts).unsqueeze(0)}
        # A packed pass is as heavy as a full batch: the copy for the largest batch runs it.
        self._forward(decoding + finishing, self.model.max_batch, keep=keep,
                      position_ids=torch.tensor([positions]), attention_mask=slices[0].mask,
                      past_key_values=packed, packed=packed, runs=self.runs, **inputs)
        for r in decoding:
            r.length += 1
        for piece in slices:
            piece.row.fed += piece.size
        if finishing:
            self._join(finishing, [(row.own_cache, torch.ones(1, row.fed, dtype=torch.long)) for row in finishing])
        for row in finishing:
            self.prefilling.remove(row)
            row.own_cache = None
        return sum(piece.size for piece in slices)

    def _closing(self, row: Row) -> list[int]:
        """Row.closing_tokens (HFModel.closing), fed before the row is kept: the next turn has less
        to prefill. Only where no other turn runs, for a row in the cache, within the context and
        the kept conversations' budget."""
        if not (row in self.decoding and all(r.done for r in self.rows)):
            return []
        tokens = row.closing_tokens(self.model.closing())
        fits = row.length + len(tokens) <= self.model.context_tokens
        return tokens if fits and self.kept.fits(row.kv + tokens) else []

    def _decode_closings(self) -> None:
        """The closings of chats that finished (every row in the cache), in a forward pass of their
        own, the shorter ones padded."""
        width = max(len(r.closing) for r in self.decoding)
        tokens = [r.closing + [self.model.pad_id] * (width - len(r.closing)) for r in self.decoding]
        real = [[1] * len(r.closing) + [0] * (width - len(r.closing)) for r in self.decoding]
        self.mask = torch.cat([self.mask, torch.tensor(real, dtype=self.mask.dtype, device=self.mask.device)], dim=1)
        self._forward([], len(tokens) * width, input_ids=torch.tensor(tokens), attention_mask=self.mask,
                      past_key_values=self.cache, runs=self.runs,
                      position_ids=torch.tensor([[r.length + i for i in range(width)] for r in self.decoding]))
        for row in self.decoding:
            row.kv += row.closing
            row.length += len(row.closing)
            row.closing = []

    def drop_done(self) -> None:
        """Remove finished rows, and cache columns that only padding still uses; a finished
        conversation is kept first, a chat's once its closing is fed (_closing)."""
        for row in self.rows:
            if row.done and row.closing is None:
                row.closing = self._closing(row)
        leaving = [r for r in self.rows if r.done and not r.closing]
        if not leaving:
            return
        self.rows = [r for r in self.rows if r not in leaving]
        self.prefilling = [r for r in self.prefilling if r not in leaving]
        for i, row in enumerate(self.decoding):
            if row in leaving and row.reason in FINISHED:
                self._keep(i, row)
        keep = [i for i, r in enumerate(self.decoding) if r not in leaving]
        self.decoding = [self.decoding[i] for i in keep]
        if not keep:
            self.cache = self.mask = self.runs = None
            return
        self._compact(torch.tensor(keep, device=self.mask.device))

    def _compact(self, rows: torch.Tensor) -> None:
        """Keep these rows of the cache, and only the columns one of them still reads (padding and
        failed guesses go)."""
        deliver_held()  # copies of the whole cache: the tokens they follow go out first
        self.mask = self.mask[rows]
        columns = self.mask.any(dim=0).nonzero().squeeze(1)
        self.mask = self.mask[:, columns]
        for layer in self.cache.layers:
            layer.set(layer.keys[rows][:, :, columns], layer.values[rows][:, :, columns])
        self.runs = row_runs(self.mask)
