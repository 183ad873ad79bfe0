"""Where scored files come from: a folder, or a list of paths (a text file, one a line; a CSV or Parquet file
with a ``path`` column), and how one file's bytes are read.

A path is a local path or an object-store URI (``s3://``, ``gs://``, ``file://``, ...): URIs are read through
pyarrow's filesystems, so a node reads what its own credentials and pyarrow build reach.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from deepfake_service.dataset import MEDIA_SUFFIXES, DatasetError, image_files
from handler.errors import ClientError

LIST_SUFFIXES = (".txt", ".csv", ".parquet")


class SourceError(DatasetError):
    """A source that names no file to score: an empty folder, a list without paths, an unreadable list."""


def is_uri(path: str | Path) -> bool:
    return "://" in str(path)


def read_media(path: str | Path) -> bytes | ClientError:
    """The file's bytes, or a ``ClientError`` saying why they cannot be read (never raises for a bad file)."""
    try:
        if not is_uri(path):
            return Path(path).read_bytes()
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(str(path))
        with filesystem.open_input_stream(inner) as stream:
            return stream.read()
    except OSError as exc:  # pyarrow's errors are OSErrors too
        return ClientError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
    except ImportError:
        return ClientError(f"cannot read {path}: object-store URIs need pyarrow (pip install '.[scan]')")


def _uri_folder(uri: str) -> list[str]:
    """Media files under a folder URI (recursive), sorted."""
    from pyarrow import fs

    filesystem, inner = fs.FileSystem.from_uri(uri)
    scheme = uri.split("://", 1)[0]
    found = filesystem.get_file_info(fs.FileSelector(inner, recursive=True))
    prefix = "file://" if scheme == "file" else f"{scheme}://"
    return sorted(prefix + info.path for info in found
                  if info.type == fs.FileType.File and os.path.splitext(info.path)[1].lower() in MEDIA_SUFFIXES)


def _listed(name: str, data: bytes) -> list[str]:
    """The paths a list file names: one a line (``.txt``; blank lines and ``#`` comments skipped), or the
    ``path`` column (else the first) of a CSV or Parquet file."""
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        column = "path" if "path" in table.column_names else table.column_names[0]
        return [str(p) for p in table.column(column).to_pylist() if p]
    text = data.decode("utf-8-sig")
    if name.endswith(".csv"):
        rows = list(csv.reader(io.StringIO(text)))
        if rows and "path" in rows[0]:  # a header: its path column
            at, rows = rows[0].index("path"), rows[1:]
        else:  # no header: the first column
            at = 0
        return [row[at] for row in rows if len(row) > at and row[at]]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _absolute(path: str) -> str:
    """A local path made absolute (workers may run in another folder); URIs as given."""
    return path if is_uri(path) else os.path.abspath(path)


def list_sources(source: str | Path) -> list[str]:
    """The files ``source`` names, as absolute local paths or URIs, without duplicates: a folder (searched
    recursively for images and videos, sorted) or a list file (``LIST_SUFFIXES``, in its order). Raises
    ``SourceError`` when it names none."""
    text = str(source)
    if text.lower().endswith(LIST_SUFFIXES):
        data = read_media(text)
        if isinstance(data, ClientError):
            raise SourceError(data.detail)
        paths = list(dict.fromkeys(_absolute(p) for p in _listed(text.lower(), data)))
    elif is_uri(text):
        paths = _uri_folder(text)
    else:
        paths = [str(p) for p in image_files(Path(text), MEDIA_SUFFIXES)]
    if not paths:
        raise SourceError(f"{source} names no file to score")
    return paths
