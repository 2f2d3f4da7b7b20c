"""What the benchmarks print about the machine they ran on."""
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the ones llama.cpp and torch pick kernels by


def cpu_flags() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    return [flag for flag in FLAGS if f" {flag}" in cpuinfo]
