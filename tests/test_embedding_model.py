"""RILL_EMBEDDING_MODEL (rill/providers/local/embedding.py): a model made for embeddings, served as
`embed/<name>`. A GGUF file through llama.cpp's embedding mode (the demo model's file stands in:
it names no pooling, so it is mean-pooled, as local/ pools it), and a tiny sentence-transformers
directory whose Pooling config is followed."""
import numpy as np
import pytest
import requests
import torch

from rill.config import Settings
from rill.providers.base import ProviderError
from rill.providers.local import LocalProvider
from rill.providers.local.choice import wheel_gguf_path
from rill.providers.local.embedding import EmbeddingProvider
from tests.server import start_server, stop_server
from tests.tiny_embedder import build

pytestmark = pytest.mark.slow

TEXTS = ["the cat sat on the mat .", "a dog ran in the park .", "the cat sat on the mat .", "hello world"]


def provider(path) -> EmbeddingProvider:
    p = EmbeddingProvider(Settings(embedding_model=str(path)))
    p.load()
    assert p.state == "ready", p.error
    return p


def test_a_gguf_file_is_pooled_as_the_chat_model_pools_itself():
    dedicated = np.array(provider(wheel_gguf_path()).embed("m", TEXTS).vectors)
    local = LocalProvider(Settings.from_env(engine="llamacpp", context_tokens=1024))
    local.load()
    assert np.allclose(dedicated, np.array(local.embed("m", TEXTS).vectors), atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls_token", "mean_tokens", "max_tokens"])
def test_a_sentence_transformers_directory_is_pooled_as_its_config_says(tmp_path, pooling):
    from transformers import AutoModel, AutoTokenizer

    directory = build(tmp_path / "tiny", pooling)
    got = np.array(provider(directory).embed("tiny", TEXTS).vectors)
    tokenizer, model = AutoTokenizer.from_pretrained(directory), AutoModel.from_pretrained(directory).eval()
    expected = []
    for text in TEXTS:  # one at a time: no padding to reason about
        with torch.inference_mode():
            states = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
        vector = {"cls_token": states[0], "mean_tokens": states.mean(0), "max_tokens": states.amax(0)}[pooling]
        expected.append(torch.nn.functional.normalize(vector, dim=0).numpy())
    assert got.shape == (4, 32) and np.allclose(got, np.array(expected), atol=1e-5)


def test_what_it_cannot_embed_is_refused(tmp_path):
    tiny = provider(build(tmp_path / "tiny"))
    with pytest.raises(ProviderError, match="token id 99 is not in embed/tiny's vocabulary"):
        tiny.embed("tiny", [[2, 99, 3]])
    with pytest.raises(ProviderError, match="input.1: 65 tokens; embed/tiny embeds at most 64"):
        tiny.embed("tiny", ["the", [4] * 65])
    missing = EmbeddingProvider(Settings(embedding_model=str(tmp_path / "nowhere.gguf")))
    missing.load()
    assert missing.state == "error" and "does not exist" in missing.models()[0]["error"]


def test_the_server_lists_it_embeds_with_it_and_refuses_to_chat_with_it(tmp_path):
    directory = build(tmp_path / "tiny-embedder")
    server = start_server("eventlet", tmp_path, entry="rill.entry", RILL_EMBEDDING_MODEL=str(directory))
    try:
        listed = [m["id"] for m in requests.get(f"{server.url}/v1/models", timeout=10).json()["data"]]
        assert "embed/tiny-embedder" in listed
        reply = requests.post(f"{server.url}/v1/embeddings", json={"model": "embed/tiny-embedder", "input": TEXTS},
                              timeout=30).json()
        assert [len(d["embedding"]) for d in reply["data"]] == [32] * 4
        chat = requests.post(f"{server.url}/v1/chat/completions", timeout=30, json={
            "model": "embed/tiny-embedder", "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 400 and "is an embedding model" in chat.json()["error"]["message"], chat.text
    finally:
        stop_server(server)
