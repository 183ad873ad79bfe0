"""``runtime: auto`` / ``precision: auto``: pick, when a worker loads, the fastest runtime x precision that
the archive carries and this machine computes natively, by a short timed probe, cached per host and archive.

Candidates on CPU: torch fp32; torch bf16 and OpenVINO bf16 only with native BF16 (else they are emulated or
silently computed in fp32); OpenVINO fp32 when the archive carries the IR; int8 only for the runtime whose
build-time gate passed (``quantization.json`` with ``validated: true``). On CUDA: torch bf16 where the GPU
supports it, else fp16, without a probe. A fixed ``runtime`` or ``precision`` narrows the candidates.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol, TypeVar

import torch

from handler.checkpoint import BUILD_RECORD, OPENVINO_INT8_MODEL, OPENVINO_MODEL, CheckpointError, read_quantization
from handler.hardware import cpu_description, native_bf16

logger = logging.getLogger(__name__)

AUTO = "auto"
PROBE_BATCH = 4  # images per timed forward pass
PROBE_SECONDS = 3.0  # timed passes per candidate stop after this long (at least one pass runs)
PROBE_MAX_PASSES = 5
# Warm-up passes run until one takes within SETTLED of the one before (bf16 kernels need more than one
# pass to be built and cached), at most PROBE_MAX_WARMUP.
PROBE_MAX_WARMUP = 4
SETTLED = 0.15
# A probe taken while other processes used more than this share of the CPU is used but not cached.
BUSY_SHARE = 0.25


class Forward(Protocol):
    """What the probe times: a runtime's forward pass (handler/runtime.py:Runtime)."""

    def predict(self, pixels: torch.Tensor) -> torch.Tensor: ...


Built = TypeVar("Built", bound=Forward)


@dataclass(frozen=True)
class Choice:
    """What ``auto`` picked, the images/s measured per candidate, and whether it came from the cache."""

    runtime: str
    precision: str
    measured: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    others_cpu: float = 0.0  # share of the CPU other processes used while the probe ran

    @property
    def reason(self) -> str:
        rates = ", ".join(f"{mode} {rate:.1f} img/s" for mode, rate in sorted(self.measured.items(), key=lambda kv: -kv[1]))
        busy = (f"; not cached: other processes used {self.others_cpu:.0%} of the CPU while it ran, the next load probes again"
                if self.others_cpu > BUSY_SHARE and not self.cached else "")
        return f"auto chose {self.runtime} {self.precision} ({'cached probe' if self.cached else 'probe'}: {rates or 'one candidate'}{busy})"


class CpuMeter:
    """The share of the whole CPU that processes other than this one used since the meter was made."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process()
        self._start = (time.monotonic(), self._process.cpu_times(), psutil.cpu_times())

    def others(self) -> float:
        wall, mine, everyone = self._start
        elapsed = (time.monotonic() - wall) * (self._psutil.cpu_count() or 1)
        if elapsed <= 0:
            return 0.0
        now_mine, now_all = self._process.cpu_times(), self._psutil.cpu_times()
        used_by_me = (now_mine.user - mine.user) + (now_mine.system - mine.system)
        idle = (now_all.idle - everyone.idle) + (getattr(now_all, "iowait", 0.0) - getattr(everyone, "iowait", 0.0))
        busy = sum(now_all) - sum(everyone) - idle
        return max(0.0, min(1.0, (busy - used_by_me) / elapsed))


def validated_int8(checkpoint: Path) -> str | None:
    """The runtime whose int8 model passed the build-time gate, or None."""
    report = read_quantization(checkpoint) or {}
    return report.get("runtime") if report.get("validated") is True else None


def candidates(checkpoint: Path, device: torch.device, runtime: str = AUTO, precision: str = AUTO) -> list[tuple[str, str]]:
    """The (runtime, precision) pairs ``auto`` may choose from for this archive on this device."""
    if device.type == "cuda":
        found = [("torch", "bf16" if torch.cuda.is_bf16_supported() else "fp16")]
    else:
        bf16 = native_bf16()
        found = [("torch", "fp32")] + ([("torch", "bf16")] if bf16 else [])
        if (checkpoint / OPENVINO_MODEL).is_file():
            found += [("openvino", "fp32")] + ([("openvino", "bf16")] if bf16 else [])
        gated = validated_int8(checkpoint)
        if gated == "torch" or (gated == "openvino" and (checkpoint / OPENVINO_INT8_MODEL).is_file()):
            found.append((gated, "int8"))
    return [(r, p) for r, p in found if runtime in (AUTO, r) and precision in (AUTO, p)]


def _timed_pass(runtime: Forward, pixels: torch.Tensor) -> float:
    started = time.perf_counter()
    runtime.predict(pixels)
    return time.perf_counter() - started


def probe(runtime: Forward, pixels: torch.Tensor, seconds: float = PROBE_SECONDS, max_passes: int = PROBE_MAX_PASSES) -> float:
    """Images/s of ``runtime`` on ``pixels``: warm-up passes until one takes within ``SETTLED`` of the one
    before (at most ``PROBE_MAX_WARMUP``), then timed passes until ``seconds`` have passed or ``max_passes``
    ran (at least one); the median pass, so one disturbed pass does not decide."""
    previous = _timed_pass(runtime, pixels)
    for _ in range(PROBE_MAX_WARMUP - 1):
        current = _timed_pass(runtime, pixels)
        settled = abs(current - previous) <= SETTLED * previous
        previous = current
        if settled:
            break
    started, times = time.perf_counter(), []
    while len(times) < max_passes and (not times or time.perf_counter() - started < seconds):
        times.append(_timed_pass(runtime, pixels))
    return len(pixels) / max(statistics.median(times), 1e-9)


def cache_key(checkpoint: Path, device: torch.device, options: list[tuple[str, str]], threads: int) -> str:
    """Same host (CPU model and flags), same archive contents, same candidates: same choice."""
    record = checkpoint.parent / BUILD_RECORD
    archive = record.read_text() if record.is_file() else [(p.name, p.stat().st_size) for p in sorted(checkpoint.iterdir())]
    blob = json.dumps({"cpu": cpu_description(), "device": str(device), "candidates": options, "threads": threads,
                       "archive": archive}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def choose(
    checkpoint: Path,
    device: torch.device,
    build: Callable[[str, str], Built],
    image_size: int,
    runtime: str = AUTO,
    precision: str = AUTO,
    threads: int = 0,
    cache_dir: Path | None = None,
    seconds: float = PROBE_SECONDS,
) -> tuple[Choice, Built]:
    """Pick and build the fastest candidate; returns the choice and the built runtime.

    ``build(runtime, precision)`` makes one candidate. The probe's result is kept in ``cache_dir``
    (default: the temporary folder, which ``make serve`` points into its run folder); a later load on the
    same host with the same archive reuses it. Raises ``CheckpointError`` when no candidate is left."""
    options = candidates(checkpoint, device, runtime, precision)
    if not options:
        raise CheckpointError(f"no runtime x precision for runtime {runtime!r}, precision {precision!r} in {checkpoint} on {device}")
    cache = (cache_dir or Path(tempfile.gettempdir())) / f"runtime-choice-{cache_key(checkpoint, device, options, threads)}.json"
    try:
        stored = Choice(**json.loads(cache.read_text()))
        if (stored.runtime, stored.precision) in options:
            return Choice(stored.runtime, stored.precision, stored.measured, cached=True), build(stored.runtime, stored.precision)
    except (OSError, ValueError, TypeError):
        pass
    if len(options) == 1:
        return Choice(*options[0]), build(*options[0])
    pixels = torch.rand(PROBE_BATCH, 3, image_size, image_size)
    meter = CpuMeter()
    best, measured = None, {}
    for mode in options:
        candidate = build(*mode)
        measured[" ".join(mode)] = round(probe(candidate, pixels, seconds), 2)
        if best is None or measured[" ".join(mode)] > measured[" ".join(best[0])]:
            best = (mode, candidate)
        else:
            del candidate
        gc.collect()
    choice = Choice(best[0][0], best[0][1], measured, others_cpu=round(meter.others(), 3))
    if choice.others_cpu > BUSY_SHARE:
        logger.warning("%s", choice.reason)
        return choice, best[1]
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(asdict(choice)))
    except OSError as exc:
        logger.warning("could not cache the runtime choice in %s: %s", cache, exc)
    return choice, best[1]
