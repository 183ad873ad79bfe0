"""``runtime: auto`` / ``precision: auto``: pick, when a worker loads, the fastest runtime x precision that
the archive carries and this machine computes natively, by a short timed probe, cached per host and archive;
workers of one host probe one at a time, and a round disturbed by other processes is repeated once.

Candidates on CPU: torch fp32; torch bf16 and OpenVINO bf16 only with native BF16 (else they are emulated or
silently computed in fp32); OpenVINO fp32 when the archive carries the IR; int8 only for the runtime whose
build-time gate passed (``quantization.json`` with ``validated: true``). On CUDA: torch bf16 where the GPU
supports it, else fp16, without a probe. A fixed ``runtime`` or ``precision`` narrows the candidates.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol, TypeVar

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
# A probe taken while other processes used more than this share of the CPU is repeated once for the two
# fastest candidates; when that round is busy too, the result is used but not settled (BUSY_REUSE_S).
BUSY_SHARE = 0.25
# Workers of one host (an archive's image and video registrations load at once) probe one at a time: a
# worker waits this long for another's probe, then reads its cached choice or probes anyway.
PROBE_LOCK_WAIT_S = 90.0
# A busy probe is kept beside the settled ones so the other workers of the same start reuse it instead of
# probing again; a load this many seconds later probes afresh.
BUSY_REUSE_S = 600.0


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
    others_cpu: float = 0.0  # share of the CPU other processes used while the (last) probe round ran
    # Why the two fastest were probed again ("" when one round was quiet); their figures are the best of both rounds.
    reprobed: str = ""
    # Seconds since another worker's busy probe that this load reused (None: not reused).
    reused_busy_s: float | None = None

    @property
    def settled(self) -> bool:
        """Whether later loads may reuse this choice for good (its last probe round was quiet)."""
        return self.others_cpu <= BUSY_SHARE

    @property
    def reason(self) -> str:
        rates = ", ".join(f"{mode} {rate:.1f} img/s" for mode, rate in sorted(self.measured.items(), key=lambda kv: -kv[1]))
        if self.reused_busy_s is not None:
            return (f"auto chose {self.runtime} {self.precision} (another worker's probe {self.reused_busy_s:.0f} s ago: {rates}; "
                    f"other processes used {self.others_cpu:.0%} of the CPU while it ran, a load after "
                    f"{BUSY_REUSE_S / 60:g} min probes again)")
        again = f"; re-probed the two fastest: {self.reprobed}" if self.reprobed and not self.cached else ""
        busy = (f"; not settled: other processes used {self.others_cpu:.0%} of the CPU while it ran; workers loading within "
                f"{BUSY_REUSE_S / 60:g} min reuse it, later loads probe again" if not self.settled and not self.cached else "")
        return f"auto chose {self.runtime} {self.precision} ({'cached probe' if self.cached else 'probe'}: {rates or 'one candidate'}{again}{busy})"


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


@contextlib.contextmanager
def exclusive(path: Path, wait_s: float = PROBE_LOCK_WAIT_S) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block, waiting at most ``wait_s``
    for another process or thread that holds it; yields whether the lock is held (a lock that cannot be
    had in time, or a folder that cannot hold it, is logged and the block runs anyway)."""
    import fcntl

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as exc:
        logger.warning("runtime probe: no lock file %s (%s); probing without waiting for other workers", path, exc)
        yield False
        return
    with handle:
        deadline, held = time.monotonic() + wait_s, False
        while not held:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
        if not held:
            logger.warning("runtime probe: another worker held %s for over %g s; probing without waiting", path, wait_s)
        try:
            yield held
        finally:
            if held:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _cached(cache: Path, options: list[tuple[str, str]]) -> Choice | None:
    """The stored choice: settled ones for good, a busy one for ``BUSY_REUSE_S`` after its probe; None when
    there is none, it is unreadable or its candidate is no longer offered."""
    try:
        stored = json.loads(cache.read_text())
        taken = float(stored.pop("taken", 0.0))
        choice = Choice(**stored)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if (choice.runtime, choice.precision) not in options:
        return None
    if choice.settled:
        return Choice(choice.runtime, choice.precision, choice.measured, cached=True)
    age = time.time() - taken
    if 0 <= age <= BUSY_REUSE_S:
        return Choice(choice.runtime, choice.precision, choice.measured, cached=True, others_cpu=choice.others_cpu, reused_busy_s=age)
    return None


def _probe_round(options: list[tuple[str, str]], build: Callable[[str, str], Built], pixels: torch.Tensor,
                 seconds: float) -> tuple[dict[str, float], tuple[tuple[str, str], Built], float]:
    """Each candidate's images/s, the fastest (kept built; the others are dropped) and the share of the
    CPU other processes used meanwhile."""
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
    return measured, best, round(meter.others(), 3)


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
    same host with the same archive reuses it. Workers sharing ``cache_dir`` probe one at a time, so a
    worker that waited reuses the choice just made. A round taken while other processes were busy is
    repeated once for the two fastest candidates (each keeps its better figure: a disturbance only slows);
    a choice whose last round was busy too is reused only for ``BUSY_REUSE_S`` (by the other workers of
    the same start). Raises ``CheckpointError`` when no candidate is left."""
    options = candidates(checkpoint, device, runtime, precision)
    if not options:
        raise CheckpointError(f"no runtime x precision for runtime {runtime!r}, precision {precision!r} in {checkpoint} on {device}")
    cache = (cache_dir or Path(tempfile.gettempdir())) / f"runtime-choice-{cache_key(checkpoint, device, options, threads)}.json"
    with exclusive(cache.with_suffix(".lock")):
        stored = _cached(cache, options)
        if stored is None and len(options) > 1:
            choice, built = _probe(options, build, image_size, seconds)
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps({**asdict(choice), "taken": time.time()}))
            except OSError as exc:
                logger.warning("could not cache the runtime choice in %s: %s", cache, exc)
            if not choice.settled:
                logger.warning("%s", choice.reason)
            return choice, built
    if stored is None:
        return Choice(*options[0]), build(*options[0])
    return stored, build(stored.runtime, stored.precision)


def _probe(options: list[tuple[str, str]], build: Callable[[str, str], Built], image_size: int, seconds: float) -> tuple[Choice, Built]:
    """Probe every candidate; when other processes were busy, probe the two fastest once more, each
    keeping its better figure. Returns the choice and its runtime, built."""
    pixels = torch.rand(PROBE_BATCH, 3, image_size, image_size)
    measured, best, others = _probe_round(options, build, pixels, seconds)
    reprobed = ""
    if others > BUSY_SHARE:
        fastest = sorted(options, key=lambda mode: -measured[" ".join(mode)])[:2]
        reprobed = f"other processes used {others:.0%} of the CPU during the first round"
        logger.warning("runtime probe: re-probing %s: %s", " and ".join(" ".join(m) for m in fastest), reprobed)
        best = None
        gc.collect()
        again, best, others = _probe_round(fastest, build, pixels, seconds)
        for mode, rate in again.items():
            measured[mode] = max(measured[mode], rate)
        best_mode = max(fastest, key=lambda mode: measured[" ".join(mode)])
        if best_mode != best[0]:  # the first round's figure for the other one was better: build it again
            best = None
            gc.collect()
            best = (best_mode, build(*best_mode))
    return Choice(best[0][0], best[0][1], measured, others_cpu=others, reprobed=reprobed), best[1]
