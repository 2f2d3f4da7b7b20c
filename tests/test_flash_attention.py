"""llama.cpp's CPU flash attention over an F16 cache as Rill's build compiles it
(patches/llama.cpp/flash-attention.patch), against the same attention in float64: ggml's op built
and run through its C API. One query at a time (every decode step's attention: 8 cells at a time, V
added up in fp32; stock llama.cpp kept V's sum in fp16 and was off by 2e-3 to 7e-3 on these cases),
and the tiled path of a follow-up or a prompt's slice (its products in bf16 pairs with AVX512-BF16)."""
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


def bf16(x) -> np.ndarray:
    """Float32 values rounded to bfloat16 (to nearest even), as float32."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16).astype(np.uint32).view(np.float32)


def exact(q, k, v, mask, round_q=lambda q: q.astype(np.float16), round_kv=lambda x: x) -> np.ndarray:
    """The same attention in float64, its inputs rounded first as the kernel takes them: by default
    the query to fp16, as the one-query path does for an F16 cache."""
    heads, queries, dk = q.shape
    group = heads // k.shape[0]
    k, v = (round_kv(x.astype(np.float32)) for x in (k, v))
    out = np.zeros((queries, heads, v.shape[2]))
    for h in range(heads):
        scores = round_q(q[h]).astype(np.float64) @ k[h // group].astype(np.float64).T / np.sqrt(dk)
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


@pytest.mark.parametrize("cells, queries", [(700, 19), (1100, 25), (600, 64)],
                         ids=["follow-up-of-19", "follow-up-of-25", "prompt-slice-of-64"])
def test_the_tiled_path_matches_float64_and_multiplies_in_bf16_where_the_cpu_can(ggml, cells, queries):
    """A step of 16 queries or more over 512 cells or more, each query seeing the cells up to its
    own, is tiled. Without AVX512-BF16 its products are f32: within 1e-4 of float64. With it, Q, K
    and V are rounded to bf16 (about 1e-2 from float64 here) and the probabilities too: within 3e-3 of
    float64 over the rounded Q, K and V, which the f32 products are not."""
    q, k, v, mask = attention_case(cells, queries)
    got = flash_attention(ggml, q, k, v, mask, 2)
    in_bf16 = exact(q, k, v, mask, round_q=bf16, round_kv=bf16)
    if ggml[1].ggml_cpu_has_avx512_bf16():
        assert np.abs(got - in_bf16).max() < 3e-3
    else:
        assert np.abs(got - exact(q, k, v, mask, round_q=lambda q: q)).max() < 1e-4
        assert np.abs(got - in_bf16).max() > 3e-3
