"""What this machine's CPU is: its /proc/cpuinfo fields, a name that tells CPUs apart, and its float32 peak.

Used by the benchmarks (share of peak) and by the convolution tuner (choices are kept per CPU).
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

# instruction sets that change which kernels run fastest (oneDNN's and XLA's pick by them)
_ISAS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")


@functools.cache
def info() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def model() -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) Platinum 8480+"), else the platform's word."""
    return info().get("model name") or platform.processor() or platform.machine()


def identity() -> str:
    """A name that tells apart CPUs sharing a model name (a cloud's "AMD EPYC" is Zen 3 on one host, Zen 5
    on another): the model name, family and model numbers, and the vector instruction sets present."""
    fields = info()
    flags = set(fields.get("flags", "").split())
    isas = "+".join(i for i in _ISAS if i in flags) or "no avx2"
    return f"{model()} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, {isas})"


def float32_lanes(fields: dict[str, str]) -> int:
    """float32 lanes of one FMA pipe: 16 where AVX-512 runs at full width (Intel's cores; AMD's from Zen 5,
    family 26: Zen 4 splits a 512-bit operation over its 256-bit pipes), 8 with AVX2 and FMA, else 4."""
    flags = set(fields.get("flags", "").split())
    amd = fields.get("vendor_id") == "AuthenticAMD"
    if "avx512f" in flags and (not amd or int(fields.get("cpu family", "0") or 0) >= 26):
        return 16
    return 8 if {"avx2", "fma"} <= flags else 4


def peak_flops(fields: dict[str, str] | None = None, cores: int | None = None) -> float:
    """The nominal float32 peak, FLOP/s: cores x 2 FMA pipes a core x `float32_lanes` x 2 flops an FMA (a
    multiply and an add) x the clock /proc/cpuinfo gives. Under a hypervisor that is the base clock: cores
    boosting above it make the true peak higher (`dlcore.bench.matmul_flops` measures what a large matrix
    product reaches). Two pipes is what the server cores of AMD (Zen 2 on) and Intel (Skylake-SP Gold and
    Platinum on) have. Examples: a Zen 5 EPYC at 2.596 GHz on 2 cores, 2 x 2 x 16 x 2 x 2.596e9 = 332
    GFLOP/s; a Zen 3 at 2.445 GHz, 2 x 2 x 8 x 2 x 2.445e9 = 156 GFLOP/s. Without a clock: 2.5 GHz."""
    fields = info() if fields is None else fields
    cores = cores or os.cpu_count() or 1
    try:
        clock = float(fields["cpu MHz"]) * 1e6
    except (KeyError, ValueError):
        clock = 2.5e9
    return cores * 2 * float32_lanes(fields) * 2 * clock
