"""llama.cpp's CPU flash attention over an F16 cache, one query at a time (every decode step's
attention), as Rill's build compiles it (patches/llama.cpp/flash-attention.patch: 8 cells at a time,
V added up in fp32), against the same attention in float64: ggml's op built and run through its C
API. Stock llama.cpp kept V's sum in fp16 and was off by 2e-3 to 7e-3 on these cases."""
import ctypes
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

F32, F16 = 0, 1  # enum ggml_type
LIB = Path(llama_cpp.__file__).parent / "lib"
BOUND = 1e-4  # the largest error allowed against float64, on outputs of magnitude about 1


class InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


@pytest.fixture(scope="module")
def ggml():
    base = ctypes.CDLL(str(LIB / "libggml-base.so"))
    cpu = ctypes.CDLL(str(LIB / "libggml-cpu.so"))
    cpu.ggml_cpu_init()
    pointer = ctypes.c_void_p
    base.ggml_init.restype, base.ggml_init.argtypes = pointer, [InitParams]
    base.ggml_new_tensor_4d.restype = pointer
    base.ggml_new_tensor_4d.argtypes = [pointer, ctypes.c_int] + [ctypes.c_int64] * 4
    base.ggml_flash_attn_ext.restype = pointer
    base.ggml_flash_attn_ext.argtypes = [pointer] * 5 + [ctypes.c_float] * 3
    base.ggml_new_graph.restype, base.ggml_new_graph.argtypes = pointer, [pointer]
    base.ggml_build_forward_expand.argtypes = [pointer, pointer]
    base.ggml_get_data.restype, base.ggml_get_data.argtypes = pointer, [pointer]
    base.ggml_free.argtypes = [pointer]
    cpu.ggml_graph_compute_with_ctx.argtypes = [pointer, pointer, ctypes.c_int]
    return base, cpu


def flash_attention(ggml, q, k, v, mask, threads: int) -> np.ndarray:
    """ggml_flash_attn_ext: q [heads, queries, D] float32; k, v [kv heads, cells, D] and mask
    [queries, cells] float16; the result [queries, heads, D]."""
    base, cpu = ggml
    heads, queries, dk = q.shape
    kv_heads, cells, dv = v.shape
    ctx = base.ggml_init(InitParams(64 << 20, None, False))
    try:
        tensors = [base.ggml_new_tensor_4d(ctx, kind, *shape) for kind, shape in
                   ((F32, (dk, queries, heads, 1)), (F16, (dk, cells, kv_heads, 1)), (F16, (dv, cells, kv_heads, 1)),
                    (F16, (cells, queries, 1, 1)))]
        for tensor, values in zip(tensors, (q, k, v, mask)):
            ctypes.memmove(base.ggml_get_data(tensor), np.ascontiguousarray(values).ctypes.data, values.nbytes)
        out = base.ggml_flash_attn_ext(ctx, *tensors, 1 / np.sqrt(dk), 0.0, 0.0)
        graph = base.ggml_new_graph(ctx)
        base.ggml_build_forward_expand(graph, out)
        cpu.ggml_graph_compute_with_ctx(ctx, graph, threads)
        result = ctypes.cast(base.ggml_get_data(out), ctypes.POINTER(ctypes.c_float))
        return np.ctypeslib.as_array(result, shape=(queries, heads, dv)).copy()
    finally:
        base.ggml_free(ctx)


def exact(q, k, v, mask) -> np.ndarray:
    """The same attention in float64 (the query rounded to fp16 first, as the kernel takes it for an
    F16 cache)."""
    heads, queries, dk = q.shape
    group = heads // k.shape[0]
    out = np.zeros((queries, heads, v.shape[2]))
    for h in range(heads):
        scores = q[h].astype(np.float16).astype(np.float64) @ k[h // group].astype(np.float64).T / np.sqrt(dk)
        scores += mask.astype(np.float64)
        weights = np.exp(scores - scores.max(axis=1, keepdims=True))
        out[:, h] = weights / weights.sum(axis=1, keepdims=True) @ v[h // group].astype(np.float64)
    return out


def attention_case(cells: int, queries: int = 1, every: int = 1, rising: bool = False, seed: int = 0):
    """SmolLM2's shape (9 heads over 3, 64 values each); a query sees one cell in `every` (a row
    among others decoding together) and, with several queries, the cells up to its own (a prompt's
    slice); `rising`: scores that grow along the cells, so the maximum moves at every few cells."""
    rng = np.random.default_rng(seed)
    q = (rng.standard_normal((9, queries, 64)) * 2).astype(np.float32)
    k = rng.standard_normal((3, cells, 64)).astype(np.float16)
    if rising:
        k = (k * 0.1 + np.linspace(0, 3, cells)[None, :, None] * np.sign(q[::3, :1, :])).astype(np.float16)
    v = rng.standard_normal((3, cells, 64)).astype(np.float16)
    mask = np.full((queries, cells), -np.inf, np.float16)
    mask[:, ::every] = 0
    for i in range(queries):  # query i sees up to cell cells - queries + i
        mask[i, cells - queries + i + 1:] = -np.inf
    return q, k, v, mask


@pytest.mark.parametrize("cells, queries, every, rising, threads", [
    (256, 1, 1, False, 1),   # whole blocks of 8 cells
    (100, 1, 1, False, 1),   # a block of 4 left at the end
    (300, 1, 3, False, 1),   # one cell in 3: the others' cells skipped
    (300, 1, 1, True, 1),    # the maximum moves along the cells
    (1024, 1, 1, False, 2),  # over 512 cells: split between the threads, their partial sums joined
    (40, 5, 1, False, 2),    # a short prompt slice, one query at a time
], ids=["256-cells", "100-cells", "every-third-cell", "rising-scores", "split-between-threads", "five-queries"])
def test_one_query_at_a_time_matches_float64(ggml, cells, queries, every, rising, threads):
    q, k, v, mask = attention_case(cells, queries, every, rising)
    got = flash_attention(ggml, q, k, v, mask, threads)
    assert np.abs(got - exact(q, k, v, mask)).max() < BOUND


def test_a_query_that_sees_one_cell_gets_its_values(ggml):
    q, k, v, mask = attention_case(64)
    mask[:] = -np.inf
    mask[0, 37] = 0
    got = flash_attention(ggml, q, k, v, mask, 1)
    for head in range(9):
        assert np.array_equal(got[0, head], v[head // 3, 37].astype(np.float32))
