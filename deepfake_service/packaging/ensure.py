"""What ``make serve`` builds: the archive of the checkpoint it was asked for, never someone else's, and
never the demo in place of an archive that is there.

``ensure_archive`` resolves the checkpoint (a folder, a Hub id fetched once into checkpoints/, or the
offline demo, written on first use), then compares it with the build record inside the existing
archive (``build.json``: content hashes of the checkpoint, the model config and the handler):
  - no archive yet: build it (from the demo when no checkpoint was asked for);
  - same inputs: keep it;
  - built by ``make serve`` itself, a checkpoint asked for: rebuild it when anything differs;
  - built by ``make serve`` itself, no checkpoint asked for: it stays the archive of the checkpoint it
    records. Rebuilt from that checkpoint when only the model config, the files it names (face model,
    trust list) or the handler changed; kept as built (saying so) when that checkpoint is gone, unusable,
    or its model files changed since;
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
from handler.checkpoint import CheckpointError

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
    """Make ``store/<name>.mar`` the archive of ``spec`` (None: the archive already there, from its own
    checkpoint; the demo only when there is none); raises ``BuildError`` (or ``FetchError``) with one
    line saying what to run."""
    archive = archive_path(name, store)
    record = read_build_record(archive) if archive.is_file() else None
    ours = record is not None and record.get("built_by") == BUILT_BY
    if archive.is_file() and not spec:
        if ours:
            return _refresh(archive, record, name, store, model_config, version)
        origin = f"built by {record['built_by']} from {record['checkpoint']}" if record else "built without a record"
        return Outcome(archive, "kept-foreign", Path(record["checkpoint"]) if record else archive, f"{origin}; served as it is")
    checkpoint, source = resolve_checkpoint(spec)
    try:
        wanted = build_inputs(checkpoint, model_config, load_options(model_config))
    except CheckpointError as exc:
        raise BuildError(str(exc)) from exc
    if record is not None and not _changed(record, wanted):
        return Outcome(archive, "kept", checkpoint, f"up to date with {_shown(checkpoint)}")
    if archive.is_file() and not ours:
        origin = f"by {record['built_by']} from {record['checkpoint']}" if record else "without a build record"
        raise BuildError(
            f"{_shown(archive)} was built {origin}, not by make serve from {spec}; it is not replaced. "
            f"Serve it as it is with `make serve` (no CHECKPOINT), or move it out of {_shown(store)} and run "
            f"`make serve CHECKPOINT={spec}` again"
        )
    build_mar(checkpoint, name, version, model_config=model_config, export_dir=store, built_by=BUILT_BY, source=source)
    if record is None:
        return Outcome(archive, "built", checkpoint, f"from {_shown(checkpoint)}")
    return Outcome(archive, "rebuilt", checkpoint, f"from {_shown(checkpoint)}; changed: {', '.join(_changed(record, wanted))}")


def _refresh(archive: Path, record: dict, name: str, store: Path, model_config: Path, version: str) -> Outcome:
    """``make serve`` without a checkpoint, over an archive it built: the same checkpoint as before."""
    checkpoint = Path(record["checkpoint"])
    asked = f"make serve CHECKPOINT={record.get('source') or _shown(checkpoint)}"
    if checkpoint == DEMO_CHECKPOINT.resolve() and not (checkpoint / "model.safetensors").is_file():
        write_demo_checkpoint(DEMO_CHECKPOINT)  # deterministic: the same demo the archive was built from
    if not (checkpoint / "config.json").is_file():
        return Outcome(archive, "kept", checkpoint, f"built from {_shown(checkpoint)}, which is gone; served as built")
    try:
        wanted = build_inputs(checkpoint, model_config, load_options(model_config))
    except CheckpointError as exc:
        return Outcome(archive, "kept", checkpoint, f"built from {_shown(checkpoint)}, which is unusable now ({exc}); served as built")
    changed = _changed(record, wanted)
    if not changed:
        return Outcome(archive, "kept", checkpoint, f"up to date with {_shown(checkpoint)}")
    if "checkpoint" in changed:
        return Outcome(archive, "kept", checkpoint, f"built from {_shown(checkpoint)}, whose files changed since "
                                                    f"({', '.join(changed)} differ); served as built: `{asked}` rebuilds it")
    build_mar(checkpoint, name, version, model_config=model_config, export_dir=store, built_by=BUILT_BY, source=record.get("source"))
    return Outcome(archive, "rebuilt", checkpoint, f"from {_shown(checkpoint)}, its own checkpoint; changed: {', '.join(changed)}")


def _changed(record: dict, wanted: dict[str, str]) -> list[str]:
    """Which build inputs differ from the record: checkpoint, model config, config files, handler."""
    return [k.removesuffix("_sha256").replace("_", " ") for k, v in wanted.items() if record.get(k) != v]


def _shown(path: Path) -> str:
    """``path`` relative to the project when inside it (shorter messages)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
