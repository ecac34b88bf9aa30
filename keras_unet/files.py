"""Writing files so that a crash never leaves half of one: the one atomic-write helper.

Every file the package writes (models, JSON, CSV, PNG, TIFF, NumPy arrays) goes through
:func:`atomic_path`: the writer fills a hidden temporary file beside the target
(``.NAME.partial.SUFFIX``), which is renamed into place only when complete. A reader or a polling
server sees the old file or the new one, never a mixture, and ``kill -9`` leaves at most a
``.*.partial*`` file, which :func:`remove_partials` cleans up.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "write_text_atomic", "write_json_atomic", "remove_partials",
           "check_writable"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; rename it onto ``path`` on success.

    The temporary name keeps the suffix, so writers that choose the format by suffix (OpenCV,
    ``keras.Model.save``, ``numpy.save``) write the right one. On an error it is removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented, key-sorted JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def remove_partials(folder: str | os.PathLike) -> int:
    """Delete the ``.*.partial*`` files a killed writer left under ``folder``; their number."""
    stale = [p for p in Path(folder).glob("**/.*.partial*") if p.is_file()]
    for p in stale:
        p.unlink()
    return len(stale)


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Raise a one-line error unless ``folder`` exists as a writable folder or can be created.

    Nothing is created: the nearest existing parent is checked instead, so a refused run leaves
    no empty folder behind.
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise NotADirectoryError(f"{what} {folder}: {probe} is a file, not a folder; choose "
                                 "another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {folder} cannot be written ({probe} is read-only); "
                              "choose another path")
    return folder
