"""llama.cpp's CPU dot products of quantized rows, as Rill's build compiles them
(patches/llama.cpp/x86-dot-products-four-blocks.patch: four blocks an iteration on x86), against
the same sums taken exactly from the blocks' stored values: each block's integer products and
scales, over row lengths that take the four-block loop, the one-block loop after it, or both;
Q4_1's two-rows-by-two-columns kernel, which must give each sum the one-row kernel's bits; and a
Q4_1 matrix repacked eight rows together (patches/llama.cpp/q4_1-eight-rows.patch), through ggml's
matrix product in its C API."""
import ctypes
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

F32, Q4_1, Q8_0, Q8_1 = 0, 3, 8, 9  # enum ggml_type
BLOCK = 32
LIB = Path(llama_cpp.__file__).parent / "lib"
AVX2_F16C = {"avx2", "f16c"} <= set(Path("/proc/cpuinfo").read_text().split())  # what Rill's x86 kernels need


class CpuTraits(ctypes.Structure):
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]


FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.c_void_p,
                           ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)

# A block's stored fields: two fp16 (d and m, or d and s) or one (d), then its 32 values' bytes.
LAYOUTS = {
    Q4_1: np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)]),
    Q8_1: np.dtype([("d", "<f2"), ("s", "<f2"), ("qs", "i1", 32)]),
    Q8_0: np.dtype([("d", "<f2"), ("qs", "i1", 32)]),
}


class InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


@pytest.fixture(scope="module")
def ggml():
    base = ctypes.CDLL(str(LIB / "libggml-base.so"))
    cpu = ctypes.CDLL(str(LIB / "libggml-cpu.so"))
    cpu.ggml_cpu_init()  # fills the fp16 table the one-block loop reads
    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(CpuTraits)
    base.ggml_quantize_chunk.restype = ctypes.c_size_t
    base.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                         ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    pointer, size = ctypes.c_void_p, ctypes.c_size_t
    for lib, name, restype, argtypes in (  # for a matrix product through ggml's C API
            (cpu, "ggml_backend_cpu_reg", pointer, []),
            (cpu, "ggml_graph_compute_with_ctx", ctypes.c_int, [pointer] * 3),
            (base, "ggml_backend_reg_dev_get", pointer, [pointer, size]),
            (base, "ggml_backend_reg_get_proc_address", pointer, [pointer, ctypes.c_char_p]),
            (base, "ggml_backend_buft_name", ctypes.c_char_p, [pointer]),
            (base, "ggml_init", pointer, [InitParams]),
            (base, "ggml_new_tensor_2d", pointer, [pointer, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]),
            (base, "ggml_mul_mat", pointer, [pointer] * 3), (base, "ggml_new_graph", pointer, [pointer]),
            (base, "ggml_build_forward_expand", None, [pointer] * 2), (base, "ggml_get_data", pointer, [pointer]),
            (base, "ggml_free", None, [pointer]), (base, "ggml_backend_buft_get_alloc_size", size, [pointer] * 2),
            (base, "ggml_backend_buft_alloc_buffer", pointer, [pointer, size]),
            (base, "ggml_backend_buffer_get_base", pointer, [pointer]),
            (base, "ggml_backend_tensor_alloc", ctypes.c_int, [pointer] * 3),
            (base, "ggml_backend_tensor_set", None, [pointer, pointer, size, size]),
            (base, "ggml_backend_buffer_free", None, [pointer]),
            (base, "ggml_backend_dev_supports_op", ctypes.c_bool, [pointer] * 2)):
        getattr(lib, name).restype, getattr(lib, name).argtypes = restype, argtypes
    return base, cpu


def quantize_weights(ggml, kind: int, values: np.ndarray) -> np.ndarray:
    base, _ = ggml
    out = np.zeros(values.size // BLOCK, LAYOUTS[kind])
    base.ggml_quantize_chunk(kind, values.ctypes.data, out.ctypes.data, 0, 1, values.size, None)
    return out


def quantize_activations(ggml, kind: int, values: np.ndarray) -> np.ndarray:
    out = np.zeros(values.size // BLOCK, LAYOUTS[kind])
    FROM_FLOAT(ggml[1].ggml_get_type_traits_cpu(kind).contents.from_float)(values.ctypes.data, out.ctypes.data,
                                                                           values.size)
    return out


def exact_dot(kind: int, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The row's dot product as the kernels define it, in float64, and the sum of its terms'
    magnitudes (the scale its rounding is measured against)."""
    if kind == Q4_1:
        qx = np.concatenate([x["qs"] & 15, x["qs"] >> 4], axis=1).astype(np.float64)
        products = x["d"].astype(np.float64)[:, None] * y["d"].astype(np.float64)[:, None] * qx * y["qs"]
        offsets = x["m"].astype(np.float64) * y["s"].astype(np.float64)
    else:
        products = x["d"].astype(np.float64)[:, None] * y["d"].astype(np.float64)[:, None] * x["qs"] * y["qs"]
        offsets = np.zeros(len(x))
    return products.sum() + offsets.sum(), np.abs(products).sum() + np.abs(offsets).sum()


@pytest.mark.parametrize("kind", [Q4_1, Q8_0], ids=["q4_1", "q8_0"])
@pytest.mark.parametrize("blocks", [1, 3, 4, 5, 18, 48])
def test_a_quantized_rows_dot_product_is_its_blocks_exact_sum(ggml, kind, blocks):
    traits = ggml[1].ggml_get_type_traits_cpu(kind).contents
    assert traits.vec_dot_type == (Q8_1 if kind == Q4_1 else Q8_0)
    rng = np.random.default_rng(blocks)
    for _ in range(20):
        weights = rng.normal(0.3, 1.0, blocks * BLOCK).astype(np.float32)  # off zero: Q4_1's m matters
        activations = rng.normal(0.0, 2.0, blocks * BLOCK).astype(np.float32)
        x, y = quantize_weights(ggml, kind, weights), quantize_activations(ggml, traits.vec_dot_type, activations)
        result = ctypes.c_float()
        VEC_DOT(traits.vec_dot)(blocks * BLOCK, ctypes.byref(result), 0, x.ctypes.data, 0, y.ctypes.data, 0, 1)
        exact, magnitude = exact_dot(kind, x, y)
        assert abs(result.value - exact) <= 1e-6 * magnitude, (result.value, exact, magnitude)
        # and the blocks hold the row: the sum is the float product within quantization error
        assert abs(exact - float(weights @ activations)) <= 0.1 * magnitude


@pytest.mark.parametrize("blocks", [1, 3, 4, 5, 18, 48])
def test_q4_1_two_rows_by_two_columns_give_the_one_row_kernels_bits(ggml, blocks):
    """A matrix product with a Q4_1 matrix that is not repacked (a tied output layer) calls its kernel
    for two rows and two columns at once (nrows = 2, on x86 with AVX2 and F16C), and for one where a
    step's column count is odd: a token's logits must not depend on which, or on what else its step
    holds."""
    traits = ggml[1].ggml_get_type_traits_cpu(Q4_1).contents
    if not AVX2_F16C:
        pytest.skip("the two-by-two kernel is built for AVX2 and F16C")
    assert traits.nrows == 2
    rng = np.random.default_rng(100 + blocks)
    for _ in range(10):
        x = quantize_weights(ggml, Q4_1, rng.normal(0.3, 1.0, 2 * blocks * BLOCK).astype(np.float32))
        y = quantize_activations(ggml, Q8_1, rng.normal(0.0, 2.0, 2 * blocks * BLOCK).astype(np.float32))
        row, column = x.itemsize * blocks, y.itemsize * blocks
        paired = (ctypes.c_float * 32)()  # s[c * 16 + r], as the matrix product lays it out
        VEC_DOT(traits.vec_dot)(blocks * BLOCK, paired, 16, x.ctypes.data, row, y.ctypes.data, column, 2)
        for r in range(2):
            for c in range(2):
                alone = ctypes.c_float()
                VEC_DOT(traits.vec_dot)(blocks * BLOCK, ctypes.byref(alone), 0, x.ctypes.data + r * row, 0,
                                        y.ctypes.data + c * column, 0, 1)
                assert paired[c * 16 + r] == alone.value, (r, c, paired[c * 16 + r], alone.value)


def repacking_buffer_type(ggml) -> tuple[int, int]:
    """The CPU backend's device, and its buffer type that repacks weights as they are set (CPU_REPACK)."""
    base, cpu = ggml
    reg = cpu.ggml_backend_cpu_reg()
    extra = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(
        base.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_dev_get_extra_bufts"))
    device = base.ggml_backend_reg_dev_get(reg, 0)
    types, found = extra(device), []
    while types[len(found)]:
        found.append(types[len(found)])
    return device, next(t for t in found if base.ggml_backend_buft_name(t) == b"CPU_REPACK")


def repacked_matmul(ggml, blocks: np.ndarray, rows: int, columns: np.ndarray) -> tuple[np.ndarray, bytes]:
    """ggml_mul_mat of a Q4_1 matrix (`rows` rows of `blocks`) set into the repacking buffer, by
    float32 `columns` [M, K], on two threads: the products [M, rows], and the matrix's bytes as laid out."""
    base, cpu = ggml
    device, buft = repacking_buffer_type(ggml)
    width = blocks.size // rows * BLOCK
    weights_ctx = base.ggml_init(InitParams(1 << 20, None, True))
    ctx = base.ggml_init(InitParams(64 << 20, None, False))
    buffer = None
    try:
        matrix = base.ggml_new_tensor_2d(weights_ctx, Q4_1, width, rows)
        buffer = base.ggml_backend_buft_alloc_buffer(buft, base.ggml_backend_buft_get_alloc_size(buft, matrix))
        assert base.ggml_backend_tensor_alloc(buffer, matrix, base.ggml_backend_buffer_get_base(buffer)) == 0
        x = base.ggml_new_tensor_2d(ctx, F32, width, len(columns))
        out = base.ggml_mul_mat(ctx, matrix, x)
        assert base.ggml_backend_dev_supports_op(device, out), "this build does not repack Q4_1"
        base.ggml_backend_tensor_set(matrix, blocks.ctypes.data, 0, blocks.nbytes)
        laid_out = ctypes.string_at(base.ggml_get_data(matrix), blocks.nbytes)
        ctypes.memmove(base.ggml_get_data(x), np.ascontiguousarray(columns, np.float32).ctypes.data, columns.size * 4)
        graph = base.ggml_new_graph(ctx)
        base.ggml_build_forward_expand(graph, out)
        cpu.ggml_graph_compute_with_ctx(ctx, graph, 2)
        result = ctypes.cast(base.ggml_get_data(out), ctypes.POINTER(ctypes.c_float))
        return np.ctypeslib.as_array(result, shape=(len(columns), rows)).copy(), laid_out
    finally:
        if buffer:
            base.ggml_backend_buffer_free(buffer)
        base.ggml_free(ctx)
        base.ggml_free(weights_ctx)


def test_a_q4_1_matrix_repacked_eight_rows_together_sums_exactly_whatever_its_columns(ggml):
    """A decode step's one column goes through the repacked matrix-vector kernel, four columns of a
    longer step through the matrix-matrix one and the rest one by one: every sum must be the blocks'
    exact sum, and a column's bits the same whichever kernel took it (a token's logits must not
    depend on its step's size)."""
    if not AVX2_F16C:
        pytest.skip("Rill's build repacks Q4_1 with AVX2 and F16C")
    rows, width = 64, 18 * BLOCK  # SmolLM2's rows are 576 values long
    rng = np.random.default_rng(7)
    blocks = quantize_weights(ggml, Q4_1, rng.normal(0.3, 1.0, rows * width).astype(np.float32))
    columns = rng.normal(0.0, 2.0, (5, width)).astype(np.float32)
    together, laid_out = repacked_matmul(ggml, blocks, rows, columns)
    assert laid_out != blocks.tobytes()  # repacked: the kernels under test are the ones that ran
    matrix = blocks.reshape(rows, width // BLOCK)
    for c, column in enumerate(columns):
        y = quantize_activations(ggml, Q8_1, column)
        for r in range(rows):
            exact, magnitude = exact_dot(Q4_1, matrix[r], y)
            assert abs(together[c, r] - exact) <= 1e-6 * magnitude, (c, r, together[c, r], exact)
        alone, _ = repacked_matmul(ggml, blocks, rows, columns[c:c + 1])
        assert np.array_equal(alone[0], together[c]), c
