"""llama.cpp's CPU dot products of quantized rows, as Rill's build compiles them
(patches/llama.cpp/x86-dot-products-four-blocks.patch: four blocks an iteration on x86), against
the same sums taken exactly from the blocks' stored values: each block's integer products and
scales, over row lengths that take the four-block loop, the one-block loop after it, or both; and
Q4_1's two-rows-by-two-columns kernel, which must give each sum the one-row kernel's bits."""
import ctypes
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

Q4_1, Q8_0, Q8_1 = 3, 8, 9  # enum ggml_type
BLOCK = 32
LIB = Path(llama_cpp.__file__).parent / "lib"


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


@pytest.fixture(scope="module")
def ggml():
    base = ctypes.CDLL(str(LIB / "libggml-base.so"))
    cpu = ctypes.CDLL(str(LIB / "libggml-cpu.so"))
    cpu.ggml_cpu_init()  # fills the fp16 table the one-block loop reads
    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(CpuTraits)
    base.ggml_quantize_chunk.restype = ctypes.c_size_t
    base.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                         ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
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
    """A matrix product calls Q4_1's kernel for two rows and two columns at once (nrows = 2, on x86
    with AVX2 and F16C), and for one where a step's column count is odd: a token's logits must not
    depend on which, or on what else its step holds."""
    traits = ggml[1].ggml_get_type_traits_cpu(Q4_1).contents
    if not {"avx2", "f16c"} <= set(Path("/proc/cpuinfo").read_text().split()):
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
