"""An image turn's time to first token on the local vision paths, each against its engine's own
tool on the same inputs, measured in the same run.

--engine transformers (default): a tiny random-weight Idefics3 built from a config
(tests/tiny_vision.py) unless --model names a real one (a Hugging Face directory:
SmolVLM-256M-Instruct, say). Rill's figure is a turn through the batched scheduler (prompt
encoding, the vision encoder, prefill, first token); generate()'s is the same prompt's first
token through a streamer. A second turn with the same picture and other words shows what the
prefix cache (keyed by the image's hash) saves.

--engine llamacpp: the wheel's SmolLM2 GGUF with a tiny random projector (tests/tiny_mmproj.py),
or --model and --mmproj; Rill's server against llama.cpp's own llama-server (bench/peer-env.sh
builds it in .peer/) given the same files, both asked over HTTP (/v1/chat/completions, streamed,
a new picture each time), alternating.

Usage: python bench/vision_bench.py [--engine transformers|llamacpp] [--runs 5] [--model PATH]
       [--mmproj GGUF] [--side 1024]
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from PIL import Image as Pillow  # noqa: E402

from rill.config import Settings  # noqa: E402
from rill.providers.base import ChatMessage, Finish, GenerationOptions, Image, Job, Piece  # noqa: E402
from rill.providers.local import LocalProvider  # noqa: E402
from rill.providers.local.choice import wheel_gguf_path  # noqa: E402
from bench.load_bench import LLAMA_SERVER, start_process  # noqa: E402
from tests.server import free_port, start_server, stop_server  # noqa: E402
from tests.tiny_mmproj import build as build_mmproj  # noqa: E402
from tests.tiny_vision import build  # noqa: E402

OPTIONS = GenerationOptions(max_tokens=8, temperature=0)


def picture(side: int, seed: int) -> Image:
    """A photo-like JPEG of side x side*2/3 pixels (noise, so every run's picture is new)."""
    generator = torch.Generator().manual_seed(seed)
    noise = (torch.rand(side * 2 // 3 // 8, side // 8, 3, generator=generator) * 255).to(torch.uint8).numpy()
    out = io.BytesIO()
    Pillow.fromarray(noise).resize((side, side * 2 // 3)).save(out, "JPEG", quality=90)
    return Image(out.getvalue(), "image/jpeg")


def rill_ttft(provider: LocalProvider, message: ChatMessage) -> tuple[float, Finish]:
    started = time.perf_counter()
    job = Job(provider, "m", [message], OPTIONS)
    provider.submit(job)
    first = None
    while True:
        item = job.channel.get(timeout=300)
        if isinstance(item, Piece) and first is None:
            first = time.perf_counter() - started
        if isinstance(item, Finish):
            return (first if first is not None else time.perf_counter() - started), item
        if not isinstance(item, Piece) and hasattr(item, "error"):
            raise item.error


def generate_ttft(provider: LocalProvider, message: ChatMessage) -> float:
    from transformers import TextIteratorStreamer

    started = time.perf_counter()
    ids, media = provider.encode_prompt([message], OPTIONS)  # the processor's work counts here too
    streamer = TextIteratorStreamer(provider.model.tokenizer, skip_prompt=True)
    model = provider.model.model

    def run():
        with torch.inference_mode():
            model.generate(input_ids=torch.tensor([ids]), **media.inputs, max_new_tokens=8, do_sample=False,
                           streamer=streamer)

    worker = threading.Thread(target=run)
    worker.start()
    for text in streamer:
        if text:
            break
    first = time.perf_counter() - started
    worker.join()
    return first


def http_ttft(url: str, model: str, image: Image) -> tuple[float, int]:
    """Seconds to the first streamed text of an image question, and the prompt's tokens."""
    import json

    import requests

    body = {"model": model, "stream": True, "max_tokens": 8, "temperature": 0,
            "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image.data_url}},
                {"type": "text", "text": "what does the picture show"}]}]}
    started, first, prompt = time.perf_counter(), None, 0
    with requests.post(f"{url}/v1/chat/completions", json=body, stream=True, timeout=300) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            if first is None and any(c["delta"].get("content") for c in chunk.get("choices", [])):
                first = time.perf_counter() - started
            prompt = (chunk.get("usage") or {}).get("prompt_tokens", prompt)
    return first if first is not None else time.perf_counter() - started, prompt


def llama_cpp(args, scratch: Path) -> None:
    if not LLAMA_SERVER.exists():
        sys.exit(f"no {LLAMA_SERVER}: run bench/peer-env.sh first")
    model = Path(args.model) if args.model else wheel_gguf_path()
    projector = Path(args.mmproj) if args.mmproj else build_mmproj(scratch / "tiny-mmproj.gguf")
    rill = start_server("eventlet", scratch, entry="rill.entry", RILL_ENGINE="llamacpp", RILL_MODEL_PATH=str(model),
                        RILL_MMPROJ_PATH=str(projector), RILL_CONTEXT_TOKENS="4096", RILL_MAX_BATCH="4")
    port = free_port()
    peer_url, stop_peer = start_process("llama-server", [
        str(LLAMA_SERVER), "-m", str(model), "--mmproj", str(projector), "--host", "127.0.0.1", "--port", str(port),
        "-np", "4", "-c", "16384", "--kv-unified", "-cb", "--no-warmup"], scratch, port,
        LD_LIBRARY_PATH=str(LLAMA_SERVER.parent))
    try:
        rill_model = f"local/{rill_name(rill.url)}"
        http_ttft(rill.url, rill_model, picture(args.side, 0))
        http_ttft(peer_url, "m", picture(args.side, 0))
        ours, theirs, tokens = [], [], (0, 0)
        for n in range(1, args.runs + 1):
            a, ta = http_ttft(rill.url, rill_model, picture(args.side, 2 * n))
            b, tb = http_ttft(peer_url, "m", picture(args.side, 2 * n + 1))
            ours.append(a)
            theirs.append(b)
            tokens = (ta, tb)
    finally:
        stop_server(rill)
        stop_peer()
    r, p = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    print(f"image turn TTFT over HTTP, {model.name} + {projector.name}, one {args.side}px picture, median of "
          f"{args.runs} alternating; prompt tokens Rill {tokens[0]}, llama-server {tokens[1]}")
    print(f"Rill (llama.cpp engine) {r:.0f} ms; llama-server {p:.0f} ms: Rill takes {r / p:.2f}x its time")


def rill_name(url: str) -> str:
    import requests

    return requests.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"].removeprefix("local/")


def transformers(args, scratch: Path) -> int:
    model = Path(args.model) if args.model else build(scratch / "tiny-vision")
    provider = LocalProvider(Settings.from_env(engine="transformers", dtype="float32", model_path=str(model),
                                               context_tokens=8192, max_batch=4))
    provider.load()
    if provider.state != "ready":
        print(f"the model did not load: {provider.error}")
        return 1
    scheduler = threading.Thread(target=provider.run, daemon=True)
    scheduler.start()
    rill_ttft(provider, ChatMessage("user", "warm up", images=(picture(args.side, 0),)))
    rill, hf, cached, tokens = [], [], [], 0
    for n in range(1, args.runs + 1):  # alternating, each with a picture never seen before
        image = picture(args.side, n)
        hf.append(generate_ttft(provider, ChatMessage("user", "what does the picture show", images=(image,))))
        seconds, finish = rill_ttft(provider, ChatMessage("user", "what does the picture show", images=(image,)))
        rill.append(seconds)
        tokens = finish.prompt_tokens
        again, _ = rill_ttft(provider, ChatMessage("user", "and what colour is it", images=(image,)))
        cached.append(again)
    provider.close("the benchmark is over")
    scheduler.join(60)  # a scheduler thread still inside torch at exit aborts the interpreter
    r, h, c = (statistics.median(x) * 1000 for x in (rill, hf, cached))
    print(f"image turn TTFT, {'tiny random Idefics3' if not args.model else args.model}, one {args.side}px "
          f"picture, {tokens} prompt tokens, median of {args.runs} (float32, {torch.get_num_threads()} threads)")
    print(f"Rill (batched scheduler) {r:.0f} ms; transformers generate() {h:.0f} ms: {h / r:.2f}x; "
          f"the same picture again with other words (prefix cache) {c:.0f} ms: {r / c:.2f}x faster than new")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["transformers", "llamacpp"], default="transformers")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", help="a vision model: a Hugging Face directory, or a GGUF with --mmproj")
    parser.add_argument("--mmproj", help="llamacpp: the model's projector GGUF (default: a tiny random one)")
    parser.add_argument("--side", type=int, default=1024, help="the picture's long side in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.engine == "llamacpp":
            llama_cpp(args, Path(scratch))
            return 0
        return transformers(args, Path(scratch))


if __name__ == "__main__":
    sys.exit(main())
