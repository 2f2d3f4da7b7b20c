"""POST /v1/embeddings (rill/transports/embeddings_api.py). Fast: the request and its encodings, in
process, with the scripted provider's vectors. Slow: the real model's pooled states on both engines,
in process and through the official SDK."""
import base64
import struct

import numpy as np
import openai
import pytest

from rill.config import Settings
from rill.providers.base import ProviderError
from rill.providers.local import LocalProvider
from rill.providers.local.contract import EMBEDDING_TOKENS
from tests.test_batching import local  # noqa: F401,F811 (the fixture: the real model on each engine)

TEXTS = ["The cat sat on the mat.", "A dog ran in the park.", "The cat sat on the mat.", "hello"]


def embed(client, **body):
    return client.post("/v1/embeddings", json={"model": "scripted/echo", **body})


def test_every_input_shape_gets_one_vector_per_input_in_order(client):
    for given, count in [("one text", 1), (TEXTS, 4), ([5, 6, 7], 1), ([[5, 6], [7]], 2)]:
        reply = embed(client, input=given)
        assert reply.status_code == 200, reply.data
        body = reply.json
        assert body["object"] == "list" and body["model"] == "scripted/echo"
        assert [d["index"] for d in body["data"]] == list(range(count))
        assert all(d["object"] == "embedding" and len(d["embedding"]) == 4 for d in body["data"])
    same = embed(client, input=TEXTS).json["data"]
    assert same[0]["embedding"] == same[2]["embedding"] != same[1]["embedding"]
    assert embed(client, input=TEXTS).json["usage"] == {"prompt_tokens": 19, "total_tokens": 19}  # words


def test_base64_is_the_same_floats_as_little_endian_float32(client):
    floats = embed(client, input=TEXTS).json["data"]
    packed = embed(client, input=TEXTS, encoding_format="base64").json["data"]
    for f, p in zip(floats, packed):
        assert list(struct.unpack("<4f", base64.b64decode(p["embedding"]))) == pytest.approx(f["embedding"], abs=1e-7)


@pytest.mark.parametrize("body,status,words", [
    ({"input": ""}, 400, "input"),
    ({"input": []}, 400, "input"),
    ({"input": ["a", 1]}, 400, "input"),
    ({"input": [[1], [-1]]}, 400, "input"),
    ({"input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
    ({"input": "a", "dimensions": 2}, 400, "dimensions: scripted/echo gives 4-dimensional vectors"),
    ({"input": "a", "truncate": True}, 400, "truncate"),
    ({"input": ["a"] * 2049}, 400, "input"),
    ({"input": "a", "model": "scripted/tools"}, 400, "scripted/tools gives no embeddings"),
    ({"input": "a", "model": "gemini/gemini-2.5-flash"}, 400, "RILL_GEMINI_API_KEY"),
])
def test_what_cannot_be_embedded_is_refused_naming_why(client, body, status, words):
    reply = embed(client, **body)
    assert reply.status_code == status and words in reply.json["error"]["message"], reply.json


# -- the real model ------------------------------------------------------------------------------

@pytest.mark.slow
def test_pooled_states_are_unit_vectors_equal_batched_and_alone_and_from_their_token_ids(local):  # noqa: F811
    together = np.array(local.embed("m", TEXTS).vectors)
    alone = np.array([local.embed("m", [text]).vectors[0] for text in TEXTS])
    ids = [local.model.tokenizer.encode(text) for text in TEXTS]
    from_ids = np.array(local.embed("m", ids).vectors)
    assert together.shape == (4, local.model.pooled([[1]])[0].shape[0])
    assert np.allclose(np.linalg.norm(together, axis=1), 1, atol=1e-5)
    assert np.allclose(together, alone, atol=1e-5) and np.allclose(together, from_ids, atol=1e-6)
    assert np.allclose(together[0], together[2], atol=1e-6)  # llama.cpp rounds by place in the batch
    # Nearer in meaning, nearer in space, even for a 135M chat model.
    assert together[0] @ together[1] > together[0] @ together[3]


@pytest.mark.slow
def test_both_engines_give_the_same_direction():
    vectors = []
    for engine in ("llamacpp", "transformers"):
        provider = LocalProvider(Settings.from_env(engine=engine, context_tokens=1024, dtype="float32"))
        provider.load()
        vectors.append(np.array(provider.embed("m", TEXTS).vectors))
    assert ((vectors[0] * vectors[1]).sum(axis=1) > 0.99).all()  # Q4_1 weights against float32 ones


@pytest.mark.slow
def test_inputs_it_cannot_take_are_refused(local):  # noqa: F811
    with pytest.raises(ProviderError, match=f"token id {local.model.n_vocab} is not in local/m's vocabulary"):
        local.embed("m", [[1, local.model.n_vocab]])
    with pytest.raises(ProviderError, match=f"input.1: {EMBEDDING_TOKENS + 1} tokens"):
        local.embed("m", [[1], [1] * (EMBEDDING_TOKENS + 1)])


@pytest.mark.slow
def test_the_openai_sdk_gets_vectors_of_the_right_shape_batched_equal_to_one_by_one(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
    model = "local/smollm2-135m-instruct"
    reply = client.embeddings.create(model=model, input=TEXTS)  # the SDK asks for base64 and decodes it
    vectors = np.array([d.embedding for d in reply.data])
    assert vectors.shape == (4, 576) and reply.usage.prompt_tokens > 4
    one_by_one = np.array([client.embeddings.create(model=model, input=t, encoding_format="float").data[0].embedding
                           for t in TEXTS])
    assert np.allclose(vectors, one_by_one, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2], atol=1e-6)


@pytest.mark.slow
def test_langchains_openai_embeddings_gets_vectors_equal_for_equal_texts_and_by_batch(server):
    """As LangChain's docs set it for a server that is not OpenAI: texts sent as they are. (Its default
    counts tokens with tiktoken's cl100k vocabulary, fetched from OpenAI at first use, and sends
    those ids, which mean nothing to another model: Rill refuses the ones outside its vocabulary.)"""
    from langchain_openai import OpenAIEmbeddings

    def client(chunk_size):
        return OpenAIEmbeddings(model="local/smollm2-135m-instruct", base_url=f"{server.url}/v1", api_key="none",
                                check_embedding_ctx_length=False, chunk_size=chunk_size, max_retries=0)

    batched = np.array(client(16).embed_documents(TEXTS))
    one_by_one = np.array(client(1).embed_documents(TEXTS))
    query = np.array(client(16).embed_query(TEXTS[0]))
    assert batched.shape == (4, 576)
    assert np.allclose(batched, one_by_one, atol=1e-5) and np.allclose(query, batched[0], atol=1e-5)
    assert np.allclose(batched[0], batched[2], atol=1e-6)
