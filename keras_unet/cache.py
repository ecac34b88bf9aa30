"""Training data larger than memory: the on-disk data cache, and how much memory data may take.

When a prepared training set (images as held, uint8 labels, float32 weight maps) would take more
than ``--data-memory`` GB, :func:`keras_unet.prepare.load_training_data` writes it once, image by
image, to a zarr store and trains from there: :func:`keras_unet.data.training_dataset` reads just
the window each tile needs, in parallel and ahead of the training step. The validation images go
to the same cache.

**Where.** ``--cache-dir``, by default the user's cache folder (``$KERAS_UNET_CACHE``, else
``$XDG_CACHE_HOME/keras-unet``, else ``~/.cache/keras-unet``), so that every run on the same data
shares one cache, whatever its ``--output``. Each cache is a folder named by its key.

**Key.** A BLAKE2b hash of every input image's and mask's pixels (shape and dtype included), of
which images are held out for validation, and of the settings that change what is stored (mask
type, classes, normalisation, border width, w0, sigma, class weights). The same data and
settings find their cache again; a changed mask, or a changed setting, makes a new one.

**Never half a cache.** A cache is written to a hidden temporary folder beside its final name and
renamed into place only once complete, with its ``meta.json`` written last; a folder without it
is never read. A build killed (``kill -9``) leaves only the temporary folder, which the next run
removes before building again. A disk that fills up while writing ends the run with one line,
and the partial cache is removed. Processes on one machine (workers of a multi-worker run)
building the same cache take turns: the second finds the first one's cache and reuses it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence as SequenceABC
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from .files import check_writable

if TYPE_CHECKING:  # TensorFlow: not imported for option errors
    from .data import TrainingSet

__all__ = ["DATA_MEMORY_SHARE", "default_data_memory", "check_data_memory", "default_cache_dir",
           "cache_key", "CacheWriter", "open_cache", "cache_lock", "check_cache_dir",
           "remove_stale", "CACHE_VERSION"]

DATA_MEMORY_SHARE = 0.25  # of the machine's memory, for the prepared training data by default
CACHE_VERSION = 1  # bump when the layout or what is stored changes
CHUNK = 512  # px: chunk side of the cached arrays (stored uncompressed: reads are what count)
META = "meta.json"
DATA_MEMORY_HELP = ("Memory the prepared images, labels and weight maps may take; beyond it they "
                    "are written once to a disk cache and read from there [default: a quarter of "
                    "this machine's memory].")
CACHE_DIR_HELP = ("Where the disk cache of training data goes; runs on the same data and "
                  "settings share it [default: $XDG_CACHE_HOME/keras-unet or ~/.cache/keras-unet].")


def physical_memory() -> int:
    """Bytes of memory of this machine (or of this container's limit, if lower)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            total = min(total, int(Path(limit).read_text().strip()))
    return total


def default_data_memory() -> float:
    """GB the prepared data may take in memory by default: a quarter of the machine's memory."""
    return round(DATA_MEMORY_SHARE * physical_memory() / 1e9, 1)


def check_data_memory(value: Any) -> float:
    """``value`` as a positive number of GB, or a one-line ValueError naming ``--data-memory``."""
    try:
        gb = float(value)
    except (TypeError, ValueError):
        gb = math.nan
    if not math.isfinite(gb) or gb <= 0:
        raise ValueError(f"--data-memory must be a positive number of GB (e.g. 4 or 0.5), got "
                         f"{value!r}")
    return gb


def default_cache_dir() -> Path:
    """``$KERAS_UNET_CACHE``, else ``$XDG_CACHE_HOME/keras-unet``, else ``~/.cache/keras-unet``."""
    if os.environ.get("KERAS_UNET_CACHE"):
        return Path(os.environ["KERAS_UNET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "keras-unet"


def cache_key(sets: Mapping[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
              settings: Mapping[str, Any]) -> str:
    """The key of a cache: a hash of the pixels of every ``(images, masks)`` set and of the
    ``settings`` that change what is stored."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True).encode())
    for name in sorted(sets):
        images, masks = sets[name]
        h.update(f"{name}:{len(images)}".encode())
        for array in (*images, *masks):
            a = np.ascontiguousarray(array)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.data)
    return h.hexdigest()


@contextlib.contextmanager
def cache_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``root/.lock`` (other processes building a cache wait)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no locks here (Windows, some network file systems)
            pass
        yield


def _write(array, values: np.ndarray) -> None:
    """Store ``values`` in the on-disk ``array`` (the one place bytes go to disk)."""
    array[...] = values


class CacheWriter:
    """Write a cache image by image into a temporary folder; :meth:`commit` makes it visible.

    Use as a context manager: leaving it without :meth:`commit` (an error, a full disk) removes
    the temporary folder, so no half-written cache is ever found.
    """

    def __init__(self, root: str | os.PathLike, key: str):
        import zarr

        self.root, self.key = Path(root), key
        self.final = self.root / key
        self.tmp = self.root / f".{key}.partial-{os.getpid()}"
        self.meta: dict[str, Any] = {"version": CACHE_VERSION, "sets": {}}
        self.bytes = 0
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.group = zarr.open_group(str(self.tmp / "data.zarr"), mode="w")

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, kind, error, tb) -> None:
        if self.tmp.exists():  # not committed
            shutil.rmtree(self.tmp, ignore_errors=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(error.errno, f"the disk holding the data cache {self.root} filled up "
                          f"after {self.bytes / 1e9:.1f} GB; the partial cache was removed. Free "
                          "space, choose another --cache-dir, or raise --data-memory") from None

    def _array(self, path: str, values: np.ndarray) -> None:
        chunks = tuple(min(CHUNK, s) for s in values.shape[:2]) + values.shape[2:]
        array = self.group.create_array(name=path, shape=values.shape, chunks=chunks,
                                        dtype=values.dtype, compressors=None, fill_value=0)
        _write(array, values)
        self.bytes += values.nbytes

    def add(self, name: str, item) -> None:
        """Store one prepared image (``image``, ``labels``, ``weights``, ``stats``,
        ``instances``) of the set ``name``."""
        entry = self.meta["sets"].setdefault(name, {"stats": []})
        i = len(entry["stats"])
        self._array(f"{name}/images/{i}", item.image)
        self._array(f"{name}/labels/{i}", item.labels)
        self._array(f"{name}/weights/{i}", item.weights)
        if item.instances is not None:
            self._array(f"{name}/instances/{i}", item.instances)
        entry["stats"].append([float(v) for v in item.stats])

    def finish_set(self, name: str, min_object_size: int, border_width: int,
                   instances: bool) -> None:
        """Record what the whole set ``name`` tells the model."""
        entry = self.meta["sets"].setdefault(name, {"stats": []})
        entry.update(min_object_size=int(min_object_size), border_width=int(border_width),
                     instances=bool(instances))

    def commit(self) -> Path:
        """Write ``meta.json`` last, then rename the folder into place; the cache's folder."""
        (self.tmp / META).write_text(json.dumps(self.meta, indent=1))
        try:
            os.rename(self.tmp, self.final)
        except OSError as exc:  # another process was first: its cache holds the same data
            if not (self.final / META).is_file():
                raise OSError(exc.errno, f"cannot move the data cache into {self.final}: "
                              f"{exc.strerror}") from None
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.final


def remove_stale(root: Path, key: str) -> None:
    """Remove what killed builds of ``key`` left (temporary folders of processes that are gone,
    or a folder without ``meta.json``)."""
    if not root.is_dir():
        return
    for tmp in root.glob(f".{key}.partial-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        alive = False
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid), 0)
            alive = int(pid) != os.getpid()
        if not alive:
            shutil.rmtree(tmp, ignore_errors=True)
    final = root / key
    if final.is_dir() and not (final / META).is_file():
        shutil.rmtree(final, ignore_errors=True)


def open_cache(folder: str | os.PathLike) -> dict[str, TrainingSet] | None:
    """The training sets of a complete cache (each array read from disk as tiles need it), or
    None when ``folder`` holds no complete cache of this version."""
    import zarr

    from .data import TrainingSet

    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != CACHE_VERSION:
        return None
    group = zarr.open_group(str(folder / "data.zarr"), mode="r")
    sets = {}
    for name, entry in meta["sets"].items():
        n = len(entry["stats"])

        def arrays(kind, name=name, n=n):
            return [group[f"{name}/{kind}/{i}"] for i in range(n)]

        sets[name] = TrainingSet(arrays("images"), arrays("labels"), arrays("weights"),
                                 Loaded(arrays("instances")) if entry.get("instances") else None,
                                 entry["min_object_size"], entry["border_width"],
                                 [tuple(s) for s in entry["stats"]])
    return sets


class Loaded(SequenceABC):
    """On-disk arrays read whole, as NumPy arrays, when asked for (object ids for the instance
    metrics, which work on whole images)."""

    def __init__(self, arrays: Sequence):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i):
        return np.asarray(self.arrays[i][...])


def check_cache_dir(root: str | os.PathLike) -> Path:
    """``root`` if a cache can be written there, else a one-line PermissionError naming
    ``--cache-dir``."""
    root = Path(root).expanduser()
    try:
        check_writable(root, "--cache-dir")
    except (PermissionError, NotADirectoryError) as exc:
        raise type(exc)(f"{exc} (the data cache; or raise --data-memory)") from None
    created = root  # the folder is made and written once, then what was made is removed
    while not created.parent.exists() and created.parent != created:
        created = created.parent
    made = not created.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()
    except OSError as exc:
        raise OSError(f"--cache-dir {root} cannot be written ({exc.strerror or exc}); choose "
                      "another path (the data cache; or raise --data-memory)") from None
    finally:
        if made:
            shutil.rmtree(created, ignore_errors=True)
    return root


def gb(n_bytes: float) -> str:
    """Bytes for people: 3.2 MB, 160 MB, 2.50 GB, 12.3 GB."""
    if n_bytes < 10e6:
        return f"{n_bytes / 1e6:.1f} MB"
    if n_bytes < 1e9:
        return f"{n_bytes / 1e6:.0f} MB"
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes < 10e9 else f"{n_bytes / 1e9:.1f} GB"

