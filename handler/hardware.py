"""What the CPU this worker runs on can compute natively, read from the kernel (Linux) with torch's own
checks as the fallback; used to keep ``precision`` honest."""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# Flags that make bf16 matmuls native: x86 AVX-512 BF16 or AMX-BF16; "bf16" is aarch64's feature name.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# The ISA flags reports name (benchmarks and load-time log lines).
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8", "bf16", "i8mm")


@lru_cache(maxsize=1)
def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (``flags`` on x86, ``Features`` on aarch64); empty when unreadable."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when this CPU computes bf16 in hardware; without it bf16 is emulated and slower than fp32."""
    flags = cpu_flags() if flags is None else flags
    if flags:
        return bool(flags & BF16_FLAGS)
    try:  # no /proc/cpuinfo: ask torch (a private helper; absent in some builds)
        import torch

        return bool(torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_description(cpuinfo: Path = CPUINFO) -> dict[str, object]:
    """Model name, core count and the reported ISA flags present, for logs and benchmark reports."""
    import os

    model = platform.processor() or platform.machine()
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags(cpuinfo)
    return {"model": model, "cores": os.cpu_count(), "isa": [f for f in REPORTED_FLAGS if f in flags]}
