"""Local vision. The transformers engine, with a tiny random-weight Idefics3 (tests/tiny_vision.py):
images go into the batched scheduler with their prompt and decode as transformers' own generate()
does; image tokens count in the prompt's usage; the prefix cache knows each image by its hash, so
the same text with another image never reuses the first image's cache. Then the real server:
an uploaded image reaches the model through the app's route, /v1 takes an image part, and the
model is listed as reading images. The llama.cpp engine, with the wheel's SmolLM2 and a tiny
random LLaVA-style projector (tests/tiny_mmproj.py) read by llama.cpp's multimodal library: the same
mechanics, checked by the final hidden state (the same prompt and picture give the same state,
from the cache or not; another picture another)."""
import base64
import io

import pytest
import requests
import torch

from rill.config import Settings
from rill.providers.base import ChatMessage, GenerationOptions, Image, Job, Piece
from rill.providers.local import LocalProvider
from tests.server import start_server, stop_server
from tests.test_batching import collect, scheduling
from tests.test_files import png
from tests.tiny_mmproj import build as build_mmproj
from tests.tiny_vision import build

pytestmark = pytest.mark.slow

RED, BLUE = Image(png(100, 60, (200, 0, 0)), "image/png"), Image(png(100, 60, (0, 0, 200)), "image/png")
GREEDY = GenerationOptions(max_tokens=8, temperature=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build(tmp_path_factory.mktemp("tiny-vision"))


@pytest.fixture(scope="module")
def vision(tiny):
    provider = LocalProvider(Settings.from_env(engine="transformers", dtype="float32", model_path=str(tiny),
                                               context_tokens=2048, max_batch=4))
    provider.load()
    assert provider.state == "ready", provider.error
    with scheduling(provider):
        yield provider


def ask(provider, *messages, options=GREEDY):
    job = Job(provider, "tiny", list(messages), options)
    provider.submit(job)
    return job


def generate(provider, messages) -> str:
    """transformers' own greedy generate() on the same inputs."""
    ids, media = provider.encode_prompt(messages, GREEDY)
    with torch.inference_mode():
        out = provider.model.model.generate(input_ids=torch.tensor([ids]), **media.inputs, max_new_tokens=8,
                                            do_sample=False)
    return provider.model.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


def test_an_image_turn_decodes_as_transformers_does_batched_beside_a_text_turn(vision):
    question = ChatMessage("user", "what colour is the picture", images=(RED,))
    jobs = [ask(vision, question), ask(vision, ChatMessage("user", "what is a river")),
            ask(vision, ChatMessage("user", "and the sky", images=(BLUE, RED)))]
    (text, finish), _, (two_text, two_finish) = [collect(job) for job in jobs]
    assert text == generate(vision, [question]) and finish.reason == "length"
    assert two_text == generate(vision, [ChatMessage("user", "and the sky", images=(BLUE, RED))])
    ids, media = vision.encode_prompt([question], GREEDY)
    image_tokens = ids.count(vision.model.image_token_id)
    assert image_tokens >= 4 and finish.prompt_tokens == len(ids)  # the image's tokens are in the usage
    assert two_finish.prompt_tokens > finish.prompt_tokens + image_tokens - 4  # two images, two sets


def test_the_prefix_cache_never_reuses_one_images_cells_for_another(vision):
    text = "what does the picture show"
    grey, dark = Image(png(100, 60, (90, 90, 90)), "image/png"), Image(png(100, 60, (20, 20, 20)), "image/png")
    first = collect(ask(vision, ChatMessage("user", text, images=(grey,))))[1]
    other = collect(ask(vision, ChatMessage("user", text, images=(dark,))))[1]
    again = collect(ask(vision, ChatMessage("user", "and now", images=(grey,))))[1]  # the picture, then other words
    ids, _ = vision.encode_prompt([ChatMessage("user", text, images=(grey,))], GREEDY)
    first_image = ids.index(vision.model.image_token_id)
    assert first.cached_tokens <= first_image  # nothing of this picture was cached yet
    assert other.cached_tokens <= first_image  # the same text, another picture: only the text before it
    assert again.cached_tokens > max(i for i, t in enumerate(ids) if t == vision.model.image_token_id)


def test_an_uploaded_image_reaches_the_local_vision_model_through_the_server(tiny, tmp_path):
    server = start_server("eventlet", tmp_path, entry="rill.entry", RILL_ENGINE="transformers", RILL_DTYPE="float32",
                          RILL_MODEL_PATH=str(tiny), RILL_MODEL="local/" + tiny.name)
    try:
        listed = {m["id"]: m for m in requests.get(f"{server.url}/v1/models", timeout=10).json()["data"]}
        assert listed[f"local/{tiny.name}"]["input_modalities"] == ["text", "image"]
        picture = io.BytesIO(png(100, 60, (0, 200, 0)))
        file_id = requests.post(f"{server.url}/api/files", files={"file": ("green.png", picture)}, timeout=10).json()["id"]
        with_image = requests.post(f"{server.url}/api/chat", timeout=60, json={
            "message": "what colour is it", "files": [file_id], "max_tokens": 4, "temperature": 0}).json()
        text_only = requests.post(f"{server.url}/api/chat", timeout=60, json={
            "message": "what colour is it", "max_tokens": 4, "temperature": 0}).json()
        assert with_image["usage"]["prompt_tokens"] >= text_only["usage"]["prompt_tokens"] + 4, with_image
        v1 = requests.post(f"{server.url}/v1/chat/completions", timeout=60, json={
            "model": f"local/{tiny.name}", "max_tokens": 4, "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64_of(png(20, 20))}},
                {"type": "text", "text": "what is it"}]}]})
        assert v1.status_code == 200 and v1.json()["usage"]["prompt_tokens"] > 4, v1.text
    finally:
        stop_server(server)


def base64_of(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_stopped_image_turn_ends_at_once(vision):
    job = ask(vision, ChatMessage("user", "tell of the lake", images=(BLUE,)),
              options=GenerationOptions(max_tokens=1500, temperature=1.0, seed=3))
    first = job.channel.get(timeout=60)
    while not isinstance(first, Piece):  # the picture is in: the reply has begun
        first = job.channel.get(timeout=60)
    job.cancel.set()
    _, finish = collect(job, timeout=30)
    assert finish.reason == "cancelled" and finish.completion_tokens < 1500


# -- llama.cpp: the wheel's SmolLM2 with a tiny random projector ---------------------------------

ONE_STEP = GenerationOptions(max_tokens=1, temperature=0, hidden_states=True)


@pytest.fixture(scope="module")
def llama_vision(tmp_path_factory):
    projector = build_mmproj(tmp_path_factory.mktemp("mmproj") / "tiny-mmproj.gguf")
    provider = LocalProvider(Settings.from_env(engine="llamacpp", mmproj_path=str(projector), context_tokens=2048,
                                               max_batch=4))
    provider.load()
    assert provider.state == "ready", provider.error
    with scheduling(provider):
        yield provider


def state(provider, message) -> tuple[list[float], object]:
    """The final hidden state after the prompt (one token asked for), and the Finish."""
    _, finish = collect(ask(provider, message, options=ONE_STEP))
    assert not isinstance(finish, Exception), finish
    return finish.hidden_states.values, finish


def test_llama_cpp_reads_an_image_through_its_projector(llama_vision):
    assert llama_vision.input_modalities("smollm2-135m-instruct") == ["text", "image"]
    picture = Image(png(120, 80, (30, 160, 90)), "image/png")
    message = ChatMessage("user", "what colour is it", images=(picture,))
    ids, media = llama_vision.encode_prompt([message], GREEDY)
    chunks = media.inputs["images"]  # one per picture here (a projector that tiles makes one per tile)
    start, end = chunks[0][0], chunks[-1][0] + chunks[-1][1]
    marks = {ids[p] for first, size, _ in chunks for p in range(first, first + size)}
    assert end > start and len(marks) == 1 and marks.pop() < 0  # every position marked by the picture's hash
    text_only, _ = llama_vision.encode_prompt([ChatMessage("user", "what colour is it")], GREEDY)
    fresh, finish = state(llama_vision, message)
    assert finish.prompt_tokens == len(ids) > len(text_only)  # the image's positions count
    again, cached = state(llama_vision, message)
    assert cached.cached_tokens > end and again == pytest.approx(fresh, abs=1e-3)  # from the cache: the same
    other, other_finish = state(llama_vision, ChatMessage("user", "what colour is it",
                                                          images=(Image(png(120, 80, (200, 20, 200)), "image/png"),)))
    assert other_finish.cached_tokens <= start  # another picture: nothing of the first one's cells
    assert other != pytest.approx(fresh, abs=1e-3)  # and the model sees it
    text, done = collect(ask(llama_vision, message, options=GenerationOptions(max_tokens=12, temperature=0)))
    assert done.reason in ("stop", "length") and done.completion_tokens >= 1
