"""Images larger than memory, by rows: lazy readers, streamed statistics, strip writers.

:func:`open_source` reads TIFF / BigTIFF (tiled or strips, through ``tifffile``'s zarr store) and
zarr / OME-Zarr arrays a band of rows at a time, and any other image whole. :class:`StripWriter`
writes a band of rows at a time, in a thread, to a tiled, zlib-compressed TIFF (BigTIFF when the
image data exceed 2 GiB; classic TIFF otherwise, which more readers open) or a zarr array.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from .images import read_image
from .preprocess import Normalizer

__all__ = ["Source", "open_source", "image_pixels", "streamed_stats", "StripWriter",
           "TIFF_TILE", "BLOCKWISE_PIXELS"]

TIFF_TILE = 256  # px: tile side of the TIFF outputs and chunk side of the zarr outputs
SUBSAMPLE = 4_000_000  # pixels at most for percentile estimates
BLOCKWISE_PIXELS = 64_000_000  # TIFF or zarr inputs above this size are predicted block-wise


def image_pixels(path: str | os.PathLike) -> int | None:
    """Height x width of a TIFF or zarr image from its header, without reading it; None for
    other formats."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in (".zarr", ".tif", ".tiff"):
        try:
            shape = open_source(path).shape
        except (ValueError, OSError):
            return None
        return shape[0] * shape[1]
    return None


class Source:
    """A 2-D image read by rows: ``shape`` ``(H, W, C)``, ``dtype``, :meth:`rows`."""

    def __init__(self, array, name: str):
        self.array, self.name = array, name
        shape = tuple(array.shape)
        if len(shape) == 2:
            shape += (1,)
        if len(shape) != 3 or shape[2] > 4:
            raise ValueError(f"{name}: expected a 2-D image (height, width[, channels]), got "
                             f"shape {tuple(array.shape)}")
        self.shape, self.dtype = shape, np.dtype(array.dtype)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as ``(rows, W, C)`` in the image's own dtype."""
        block = np.asarray(self.array[start:stop])
        return block[..., None] if block.ndim == 2 else block


def open_source(path: str | os.PathLike) -> Source:
    """A lazily read image: TIFF/BigTIFF (tiled or strips) and zarr/OME-Zarr by blocks, anything
    else (PNG, JPEG, ...) in memory."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    try:
        if path.is_dir() or path.suffix.lower() == ".zarr":
            node = zarr.open(str(path), mode="r")
        elif path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            node = zarr.open(tifffile.imread(str(path), aszarr=True), mode="r")
        else:
            return Source(read_image(path), path.name)
    except (ValueError, OSError, KeyError) as exc:
        raise ValueError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(node, zarr.Group):  # OME-Zarr / pyramidal TIFF: the full-resolution level
        keys = sorted(node.array_keys())
        if not keys:
            raise ValueError(f"{path} holds no array")
        node = node["0"] if "0" in keys else node[keys[0]]
    return Source(node, path.name)


def streamed_stats(source: Source, normalizer: Normalizer, strip: int):
    """Whole-image ``(offset, divisor)`` of the normaliser, in a first pass when needed."""
    h = source.shape[0]
    if normalizer.mode == "fixed":
        return normalizer.stats(np.zeros((1, 1, source.shape[2]), np.float32))
    if normalizer.mode == "percentile":
        step = max(1, int(math.sqrt(source.shape[0] * source.shape[1] / SUBSAMPLE)))
        sample = np.concatenate([source.rows(y, min(y + strip, h))[::step, ::step].ravel()
                                 for y in range(0, h, strip)])
        return normalizer.stats(sample.reshape(-1, 1, 1).astype(np.float32))
    total = total_sq = 0.0
    for y in range(0, h, strip):
        x = source.rows(y, min(y + strip, h)).astype(np.float64)
        total += float(x.sum())
        total_sq += float(np.square(x).sum())
    n = source.shape[0] * source.shape[1] * source.shape[2]
    mean = total / n
    std = math.sqrt(max(total_sq / n - mean * mean, 0.0))
    return float(np.float32(mean)), max(std, 1e-6 * normalizer.scale)


class StripWriter:
    """One output written by a thread from a queue of ``(y0, rows)`` strips: a tiled BigTIFF
    (tiles are yielded to tifffile row by row of tiles) or a zarr array."""

    def __init__(self, path: Path, shape: tuple[int, int], dtype, kind: str):
        self.path, self.shape, self.dtype, self.kind = path, shape, np.dtype(dtype), kind
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, y0: int, rows: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((y0, rows))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _strips(self) -> Iterator[tuple[int, np.ndarray]]:
        while (item := self.queue.get()) is not None:
            yield item

    def _run(self) -> None:
        try:
            if self.kind == "zarr":
                import zarr

                out = zarr.open(str(self.path), mode="w", shape=self.shape, dtype=self.dtype,
                                chunks=(TIFF_TILE, TIFF_TILE))
                for y0, rows in self._strips():
                    out[y0:y0 + len(rows)] = rows
                return
            import tifffile

            tifffile.imwrite(self.path, data=self._tiles_all(), shape=self.shape,
                             dtype=self.dtype, tile=(TIFF_TILE, TIFF_TILE),
                             bigtiff=self.shape[0] * self.shape[1] * self.dtype.itemsize > 2**31,
                             compression="zlib")
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc
            while self.queue.get() is not None:  # drain, so the producer never blocks
                pass

    def _tiles_all(self) -> Iterator[np.ndarray]:
        t, (h, w) = TIFF_TILE, self.shape
        width = math.ceil(w / t) * t
        pending, written = np.zeros((0, w), self.dtype), 0
        for _, rows in self._strips():
            pending = np.concatenate([pending, rows.astype(self.dtype, copy=False)])
            while len(pending) >= t or (len(pending) and written + len(pending) == h):
                band, pending = pending[:t], pending[t:]
                written += len(band)
                padded = np.zeros((t, width), self.dtype)
                padded[:len(band), :w] = band
                for x in range(0, width, t):
                    yield padded[:, x:x + t]
