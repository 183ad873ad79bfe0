"""What ``make serve`` builds: the archive of the checkpoint it was asked for, never someone else's.

``ensure_archive`` resolves the checkpoint (a folder, a Hub id fetched once into checkpoints/, or the
offline demo, written on first use), then compares it with the build record inside the existing
archive (``build.json``: content hashes of the checkpoint, the model config and the handler):
  - no archive yet: build it;
  - same inputs: keep it;
  - built by ``make serve`` itself from other inputs: rebuild it;
  - built by another command (``scripts.build_mar``, ``scripts.rollout``) or without a record: keep
    it when no checkpoint was asked for (it is served as it is); refuse, with one line saying what to
    run, when another checkpoint was asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deepfake_service.packaging.archive import BuildError, build_inputs, build_mar, load_options, read_build_record
from deepfake_service.packaging.demo import write_demo_checkpoint
from deepfake_service.packaging.fetch import fetch_checkpoint, hub_folder
from deepfake_service.project import DEMO_CHECKPOINT, MODEL_CONFIG, MODEL_NAME, MODEL_STORE, MODEL_VERSION, ROOT, archive_path

BUILT_BY = "make serve"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Outcome:
    """What ``ensure_archive`` did: ``action`` is built, rebuilt, kept or kept-foreign."""

    archive: Path
    action: str
    checkpoint: Path
    reason: str

    def __str__(self) -> str:
        return f"{_shown(self.archive)}: {self.action} ({self.reason})"


def resolve_checkpoint(spec: str | None) -> tuple[Path, str | None]:
    """(checkpoint folder, Hub id or None) for ``spec``: an existing folder, a Hub id (fetched into
    checkpoints/<name> unless already there), or None for the demo (written when missing).

    Raises ``FetchError`` when a Hub id cannot be fetched, ``BuildError`` for anything else."""
    if not spec:
        if not (DEMO_CHECKPOINT / "model.safetensors").is_file():
            write_demo_checkpoint(DEMO_CHECKPOINT)
        return DEMO_CHECKPOINT, None
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return folder.resolve(), None
    if HUB_ID.match(spec) and not folder.exists():
        target = hub_folder(spec)
        if not (target / "config.json").is_file():
            fetch_checkpoint(spec, target)
        return target.resolve(), spec
    raise BuildError(f"CHECKPOINT={spec} is neither a checkpoint folder nor a Hub id like owner/name")


def ensure_archive(
    spec: str | None,
    name: str = MODEL_NAME,
    store: Path = MODEL_STORE,
    model_config: Path = MODEL_CONFIG,
    version: str = MODEL_VERSION,
) -> Outcome:
    """Make ``store/<name>.mar`` the archive of ``spec`` (None: the demo, unless another command's
    archive is there); raises ``BuildError`` (or ``FetchError``) with one line saying what to run."""
    archive = archive_path(name, store)
    record = read_build_record(archive) if archive.is_file() else None
    if archive.is_file() and not spec and (record is None or record.get("built_by") != BUILT_BY):
        origin = f"built by {record['built_by']} from {record['checkpoint']}" if record else "built without a record"
        return Outcome(archive, "kept-foreign", Path(record["checkpoint"]) if record else archive, f"{origin}; served as it is")
    checkpoint, source = resolve_checkpoint(spec)
    wanted = build_inputs(checkpoint, model_config, load_options(model_config))
    if record is not None and all(record.get(k) == v for k, v in wanted.items()):
        return Outcome(archive, "kept", checkpoint, f"up to date with {_shown(checkpoint)}")
    if archive.is_file() and (record is None or record.get("built_by") != BUILT_BY):
        origin = f"by {record['built_by']} from {record['checkpoint']}" if record else "without a build record"
        raise BuildError(
            f"{_shown(archive)} was built {origin}, not by make serve from {spec}; it is not replaced. "
            f"Serve it as it is with `make serve` (no CHECKPOINT), or move it out of {_shown(store)} and run "
            f"`make serve CHECKPOINT={spec}` again"
        )
    changed = [k.removesuffix("_sha256").replace("_", " ") for k, v in wanted.items() if record and record.get(k) != v]
    build_mar(checkpoint, name, version, model_config=model_config, export_dir=store, built_by=BUILT_BY, source=source)
    if record is None:
        return Outcome(archive, "built", checkpoint, f"from {_shown(checkpoint)}")
    return Outcome(archive, "rebuilt", checkpoint, f"from {_shown(checkpoint)}; changed: {', '.join(changed)}")


def _shown(path: Path) -> str:
    """``path`` relative to the project when inside it (shorter messages)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
