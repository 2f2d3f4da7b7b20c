"""llama.cpp's vision path: a projector GGUF (mmproj) read by its multimodal library (mtmd), which
cuts a prompt with images into text and image chunks, and turns an image chunk into embeddings
that a llama.cpp context decodes in place of tokens.

An image's positions in a row's prompt hold a negative number from the image's hash (never a
token id): the prefix cache and the cell sharing compare prompts, and so never take one image's
cells for another's. The row's Media keeps, for each image, where it starts, how many positions
it takes and its chunk (an image cut into tiles has a chunk per tile, each marked by the image).
"""
from __future__ import annotations

import ctypes
import io
import weakref
from pathlib import Path

from ..base import Image
from .contract import Media, image_mark


class Projector:
    def __init__(self, path: Path, model, threads: int, gpu: bool):
        from llama_cpp import mtmd_cpp as M  # needs libmtmd: llama-cpp-python built with LLAVA_BUILD (make setup)

        self.M = M
        params = M.mtmd_context_params_default()
        params.use_gpu, params.n_threads, params.print_timings, params.warmup = gpu, threads, False, False
        self.ctx = M.mtmd_init_from_file(str(path).encode(), model, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not load the projector {path} for this model (RILL_MMPROJ_PATH)")
        if not M.mtmd_support_vision(self.ctx):
            raise RuntimeError(f"{path} is not a vision projector (RILL_MMPROJ_PATH)")
        if M.mtmd_decode_use_mrope(self.ctx):
            raise RuntimeError(f"{path} needs M-RoPE positions (Qwen2-VL and the like), which Rill does not do yet")
        self.marker = M.mtmd_default_marker().decode()

    def flatten(self, message: dict) -> dict:
        """A message whose content has image parts, as text with a marker where each image goes."""
        if isinstance(message.get("content"), list):
            message = {**message, "content": "".join(self.marker if p["type"] == "image" else p["text"]
                                                      for p in message["content"])}
        return message

    def tokenize(self, text: str, images: list[Image]) -> tuple[list[int], Media]:
        """The prompt (each image's positions marked by its hash) and its chunks."""
        from PIL import Image as Pillow

        M = self.M
        bitmaps = []
        for image in images:
            with Pillow.open(io.BytesIO(image.data)) as opened:
                rgb = opened.convert("RGB")
            data = rgb.tobytes()
            bitmap = M.mtmd_bitmap_init(rgb.width, rgb.height, (ctypes.c_uint8 * len(data)).from_buffer_copy(data))
            M.mtmd_bitmap_set_id(bitmap, image.sha256.encode())  # every chunk of the image carries it
            bitmaps.append(bitmap)
        chunks = M.mtmd_input_chunks_init()
        try:
            raw = text.encode()
            given = M.mtmd_input_text(raw, len(raw), False, True)  # the template's markers parse as themselves
            array = (M.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            status = M.mtmd_tokenize(self.ctx, chunks, ctypes.byref(given), array, len(bitmaps))
        finally:
            for bitmap in bitmaps:
                M.mtmd_bitmap_free(bitmap)
        if status != 0:
            M.mtmd_input_chunks_free(chunks)
            raise RuntimeError(f"llama.cpp could not cut the prompt at its images (mtmd_tokenize: {status})")
        ids, placed = [], []
        for n in range(M.mtmd_input_chunks_size(chunks)):
            chunk = M.mtmd_input_chunks_get(chunks, n)
            if M.mtmd_input_chunk_get_type(chunk) == M.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t()
                tokens = M.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))[: count.value]
                if -1 in tokens:  # LLAMA_TOKEN_NULL: a marker the projector needs is not in the vocabulary
                    M.mtmd_input_chunks_free(chunks)
                    raise RuntimeError("this model's vocabulary lacks a token its projector puts around images: "
                                       "is RILL_MMPROJ_PATH the projector made for this model?")
                ids += tokens
            else:
                if M.mtmd_decode_use_non_causal(self.ctx, chunk):
                    M.mtmd_input_chunks_free(chunks)
                    raise RuntimeError("this projector's images need non-causal attention (Gemma 3 and the like), "
                                       "which Rill does not do yet")
                size = M.mtmd_input_chunk_get_n_tokens(chunk)  # an image may come in several (its tiles)
                placed.append((len(ids), size, chunk))
                ids += [image_mark(M.mtmd_input_chunk_get_id(chunk).decode())] * size
        media = Media({"images": placed}, ids)
        weakref.finalize(media, M.mtmd_input_chunks_free, chunks)  # the chunks live as long as the row's media
        return ids, media

    def close(self) -> None:
        self.M.mtmd_free(self.ctx)

    def embeddings(self, chunk, size: int, width: int) -> ctypes.Array:
        """An image chunk through the vision encoder: size x width floats."""
        if self.M.mtmd_encode_chunk(self.ctx, chunk) != 0:
            raise RuntimeError("llama.cpp's vision encoder failed on an image")
        out = self.M.mtmd_get_output_embd(self.ctx)
        return (ctypes.c_float * (size * width)).from_address(ctypes.addressof(out.contents))
