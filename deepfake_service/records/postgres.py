"""A throw-away PostgreSQL for the record-store tests and benchmark: Debian's server binaries, a cluster on a free
loopback port, stopped at the end (make test installs the postgresql package when it is missing)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from deepfake_service.ports import free_port

POSTGRES_BIN = "/usr/lib/postgresql/*/bin"


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (initdb, pg_ctl), or None."""
    found = sorted(glob.glob(f"{POSTGRES_BIN}/initdb"))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a fresh folder under the system temp folder (reachable by the ``postgres``
    user, unlike pytest's private one) on 127.0.0.1, trust auth, no fsync; yields the SQLAlchemy URL of an
    empty database and removes everything after. As root the server runs as ``postgres`` (it refuses root)."""
    binaries = server_binaries()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed: make test installs it (apt-get install postgresql)")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    workdir = Path(tempfile.mkdtemp(prefix="deepfake-records-pg-"))
    if as_user:
        shutil.chown(workdir, "postgres")
    data, port = workdir / "data", free_port()
    subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "deepfake", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(workdir / "log"), "-w", "-t", "60", "start"],
                   check=True, capture_output=True, timeout=90)
    try:
        subprocess.run([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "deepfake", "records"],
                       check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg://deepfake@127.0.0.1:{port}/records"
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
