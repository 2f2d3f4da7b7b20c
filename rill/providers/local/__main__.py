"""`python -m rill.providers.local`: convert the configured model for the transformers engine
into the cache now, with a progress bar (the llama.cpp engine needs no conversion)."""
from ...config import Settings
from .choice import wheel_gguf_path
from .options import LocalOptions
from .transformers import prepare_model_dir

options = LocalOptions.from_settings(Settings.from_env())
print(f"model ready: {prepare_model_dir(options.source or wheel_gguf_path(), options.cache_dir, options.name)}")
