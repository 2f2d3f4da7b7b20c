"""A tiny vision model with random weights, built from a config (no vision weights can be downloaded
here): an Idefics3 (SmolVLM's family) of two text and two vision layers, a word-level tokenizer
made in place, and the processor that puts each image's tokens into the prompt."""
from __future__ import annotations

from pathlib import Path

WORDS = ("what colour is it the picture shows a red blue green river lake sky and of in on yes no "
         "user assistant system").split()
SPECIAL = ["<unk>", "<pad>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>"]
TEMPLATE = ("{% for message in messages %}{{ message['role'] }}{{ ': ' }}"
            "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>' }}"
            "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
            "{{ ' <end_of_utterance> ' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")


def build(directory: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor,
                              Idefics3Processor, LlamaConfig, PreTrainedTokenizerFast)
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig

    tiles = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    vocab = {token: n for n, token in enumerate([*SPECIAL, *tiles, *WORDS, ":"])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="<end_of_utterance>",
                                        additional_special_tokens=SPECIAL[3:] + tiles)
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}),
        tokenizer=tokenizer, image_seq_len=4, chat_template=TEMPLATE)
    text = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                       tie_word_embeddings=False, pad_token_id=vocab["<pad>"])
    vision = Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=32, patch_size=8)
    config = Idefics3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), scale_factor=2,
                            image_token_id=vocab["<image>"])
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config.eos_token_id = vocab["<end_of_utterance>"]
    model.generation_config.pad_token_id = vocab["<pad>"]
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
