"""The Ray side of a scan: a predictor (the handler core, loaded once per actor) in a Ray Data actor pool over a
list of paths, each finished batch streamed back to the driver as rows.

Ray is imported here only, lazily: serving, the handler core and the in-process commands never need it. The
paths go in as in-memory blocks (no read stage): each actor reads its batch's files itself, so on 1-CPU nodes
no read task waits for a CPU the actors hold. A lost actor is restarted and its batch retried by Ray Data;
the driver keeps each path's first row (``RayPredictor.stream``), so a retried batch adds nothing twice.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from deepfake_service.dataset import VIDEO_SUFFIXES

LOCAL = "local"  # --ray without an address: an embedded Ray on this machine (ray.init's own word for it)
MAX_BLOCKS = 10_000  # input blocks, each of one or more planned batches (several past 10,000 batches: a task then
# scores its block's batches one after another, and the end of the scan balances less finely)


def plan_batches(paths: Sequence[str], chunk: int, actors: int) -> list[list[int]]:
    """Indices into ``paths``, batch by batch, in the order the pool takes them: each video alone and first (by its
    suffix: a clip is many frames' work, so the longest jobs go first and no actor ends the scan on one), then the
    images in batches
    of ``chunk``, the last ones shrinking to at most what is left over 2 x ``actors`` (at least one), so that the
    actors finish together instead of one idling while another scores a whole batch."""
    videos = [i for i, path in enumerate(paths) if os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES]
    taken = set(videos)
    images = [i for i in range(len(paths)) if i not in taken]
    batches = [[i] for i in videos]
    start = 0
    while start < len(images):
        size = max(1, min(chunk, math.ceil((len(images) - start) / (2 * actors))))
        batches.append(images[start : start + size])
        start += size
    return batches


class ScanSetupError(Exception):
    """The pool cannot be set up: no Ray installed, an unreachable cluster, or settings it cannot satisfy."""


@dataclass(frozen=True)
class PoolSettings:
    """``address``: a Ray cluster (``ray start``'s, KubeRay's ``ray://`` or ``host:port``), or ``LOCAL`` for an
    embedded Ray; ``actors``: pool size (None: as many as the cluster's CPUs, or GPUs, hold); ``cpus`` and
    ``gpus`` per actor (its threads, the handler option ``threads``, follow ``cpus``)."""

    address: str = LOCAL
    actors: int | None = None
    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.cpus <= 0 or self.gpus < 0 or (self.actors is not None and self.actors < 1):
            raise ScanSetupError(f"an actor needs CPUs > 0, GPUs >= 0 and a pool at least one actor, not {self}")

    @property
    def threads(self) -> int:
        """Threads per actor (torch, the face detector, the video decoder): its whole CPUs, at least one."""
        return max(1, int(self.cpus))

    @property
    def device(self) -> str:
        return "cuda" if self.gpus > 0 else "cpu"


def connect(address: str):
    """The ``ray`` module, connected: to ``address``, or (``LOCAL``) to an embedded Ray started here. An
    already-connected driver is kept as it is."""
    try:
        import ray
    except ImportError as exc:
        raise ScanSetupError("--ray needs Ray: pip install -c constraints.txt '.[scan]'") from exc
    if not ray.is_initialized():
        try:
            # "local" starts a new Ray here even when ray start left a cluster address file behind
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ScanSetupError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    return ray


def pool_size(settings: PoolSettings, resources: dict[str, float]) -> int:
    """The actor count: ``settings.actors``, else as many as the cluster's CPUs (and GPUs) hold, at least one."""
    if settings.actors is not None:
        return settings.actors
    fits = math.floor(resources.get("CPU", 1) / settings.cpus + 1e-9)
    if settings.gpus > 0:
        fits = min(fits, math.floor(resources.get("GPU", 0) / settings.gpus + 1e-9))
    return max(1, fits)


class ScanActor:
    """One pool actor: ``factory()`` (a predictor, built once here) scores each batch of paths (one input row:
    the batch's indices ``i`` and ``path`` lists); each output row is one file's ``Scored`` fields, the
    prediction as JSON, its index ``i`` and this actor's Ray ``node``."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        import ray

        self.node = ray.get_runtime_context().get_node_id()
        self.predictor = factory()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        indices = [int(i) for row in batch["i"] for i in row]
        scored = self.predictor.predict([str(p) for row in batch["path"] for p in row])
        rows = [{**{k: v for k, v in vars(s).items() if k != "path"}, "node": self.node} for s in scored]
        for row in rows:
            row["prediction"] = json.dumps(row["prediction"]) if row["prediction"] is not None else ""
            for key, value in row.items():
                row[key] = "" if value is None else value  # one column type across batches
        return {"i": indices, **{key: [row[key] for row in rows] for key in rows[0]}} if rows else {"i": []}


def pool_rows(paths: Sequence[str], factory: Callable[[], Any], settings: PoolSettings, chunk: int,
              progress: bool = True) -> Iterator[list[dict]]:
    """Each finished batch's rows (``ScanActor``'s, with ``i`` the index into ``paths``), as the pool returns
    them; a retried batch may come twice. Raises ``ScanSetupError`` before anything runs when Ray is missing
    or the cluster unreachable."""
    connect(settings.address)
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    context.enable_operator_progress_bars = progress
    actors = pool_size(settings, ray.cluster_resources())
    batches = plan_batches(paths, chunk, actors)
    rows = [{"i": batch, "path": [paths[i] for i in batch]} for batch in batches]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(MAX_BLOCKS, len(rows))))
    # One batch at a time per actor: a queue of batches on one actor leaves the others idle at the end of a scan
    # (a clip's batch takes many photos' time), and the paths' blocks cost nothing to fetch.
    pool = ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1)
    dataset = dataset.map_batches(ScanActor, fn_constructor_kwargs={"factory": factory}, batch_size=1, compute=pool,
                                  num_cpus=settings.cpus, num_gpus=settings.gpus or None)
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        yield batch.to_pylist()
