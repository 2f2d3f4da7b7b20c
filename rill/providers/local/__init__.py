"""The local model: two engines behind one provider.

llama.cpp (llama_cpp.py) runs GGUF files as they are; transformers (transformers.py) runs Hugging
Face directories, GPUs, and GGUF files where llama.cpp is not installed (choice.py picks). What
they share: the provider (provider.py), one Row per turn (row.py), the scheduler that batches
them (scheduler.py), the pacer for long prompts (pacer.py), and prefix reuse (prefix_cache.py);
contract.py says what an engine provides.
"""
from .choice import wheel_gguf_path
from .provider import LocalProvider

__all__ = ["LocalProvider", "wheel_gguf_path"]
