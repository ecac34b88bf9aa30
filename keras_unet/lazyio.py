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

from .images import Layout, image_layout, read_image
from .preprocess import EPS, Normalizer

__all__ = ["Source", "open_source", "image_pixels", "streamed_stats", "StripWriter",
           "TIFF_TILE", "BLOCKWISE_PIXELS", "blockwise_reason", "whole_image_bytes"]

TIFF_TILE = 256  # px: tile side of the TIFF outputs and chunk side of the zarr outputs
SUBSAMPLE = 4_000_000  # pixels at most for percentile estimates
BLOCKWISE_PIXELS = 64_000_000  # inputs above this size are predicted block-wise


#: memory a whole-image prediction may take before the image goes block-wise
WHOLE_IMAGE_BYTES = 2 * 1024**3
#: bytes per pixel of a whole-image prediction, from the peak memory (``/usr/bin/time -f %M``)
#: of ``keras-unet predict`` on a 2000 x 2000 8-bit PNG less that on a 100 x 100 one: 46 B/px
#: plain, 60 with --instances, 141 with the overlay, 187 with both (1 channel, 2 classes)
BYTES_PER_PIXEL = {"base": 22, "per_channel": 8, "per_class": 8, "instances": 40,
                   "overlay": 95, "probabilities": 4}


def image_pixels(path: str | os.PathLike, axes: str | None = None) -> int | None:
    """Height x width of one page of an image (any format, zarr included) from its header,
    without reading its pixels; None if the header cannot be read."""
    path = Path(path)
    try:
        if path.is_dir() or path.suffix.lower() == ".zarr":
            shape = open_source(path).shape
            return shape[0] * shape[1]
        layout = image_layout(path, axes)
    except (ValueError, OSError):
        return None
    return layout.height * layout.width


def whole_image_bytes(pixels: int, channels: int, n_classes: int, instances: bool,
                      overlay: bool, probabilities: bool, tta: bool = False) -> int:
    """Estimated peak memory of predicting one ``pixels`` image whole (:data:`BYTES_PER_PIXEL`:
    the raw and normalised image, its mirror-padded copy, the probabilities and the class map,
    plus the instance step's distance maps and labels, the overlay, the saved
    probabilities)."""
    b = BYTES_PER_PIXEL
    per_pixel = (b["base"] + b["per_channel"] * channels + b["per_class"] * n_classes
                 * (2 if tta else 1) + (b["instances"] if instances else 0)
                 + (b["overlay"] if overlay else 0)
                 + (b["probabilities"] * n_classes if probabilities else 0))
    return int(pixels * per_pixel)


def blockwise_reason(path: str | os.PathLike, axes: str | None, n_classes: int,
                     instances: bool, overlay: bool = True, probabilities: bool = False,
                     tta: bool = False) -> tuple[str | None, int]:
    """Why ``path`` is predicted block-wise (None: whole), and its pixels per page.

    The same rule for every format: zarr inputs always; a single 2-D image when it has more
    than :data:`BLOCKWISE_PIXELS` pixels or its whole-image prediction would take more than
    :data:`WHOLE_IMAGE_BYTES` (:func:`whole_image_bytes`). Stacks are predicted page by page.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".zarr":
        return "zarr input", image_pixels(path) or 0
    try:
        layout = image_layout(path, axes)
    except (ValueError, OSError):
        return None, 0  # the reader gives the error
    pixels = layout.height * layout.width
    if layout.pages > 1:
        return None, pixels
    need = whole_image_bytes(pixels, layout.channels, n_classes, instances, overlay,
                             probabilities, tta)
    if pixels > BLOCKWISE_PIXELS:
        return f"more than {BLOCKWISE_PIXELS / 1e6:.0f} megapixels", pixels
    if need > WHOLE_IMAGE_BYTES:
        return (f"whole, it would take about {need / 1024**3:.1f} GiB, more than "
                f"{WHOLE_IMAGE_BYTES / 1024**3:.0f} GiB"), pixels
    return None, pixels


class Source:
    """A 2-D image read by rows: ``shape`` ``(H, W, C)``, ``dtype``, :meth:`rows`.

    ``layout`` (a :class:`keras_unet.images.Layout`) maps a TIFF's stored axes (``CYX``, a
    length-1 axis, ...) to rows; without it the array is ``(H, W[, C])``.
    """

    def __init__(self, array, name: str, layout: Layout | None = None):
        self.array, self.name, self.layout = array, name, layout
        if layout is not None:
            if layout.pages > 1:
                raise ValueError(f"{name}: block-wise prediction takes one 2-D image; this file "
                                 f"holds {layout.describe()}")
            shape = (layout.height, layout.width,
                     layout.shape[layout.axes.index("C")] if "C" in layout.axes else 1)
        else:
            shape = tuple(array.shape)
            if len(shape) == 2:
                shape += (1,)
            if len(shape) != 3:
                raise ValueError(f"{name}: expected a 2-D image (height, width[, channels]), got "
                                 f"shape {tuple(array.shape)}")
        self.shape, self.dtype = shape, np.dtype(array.dtype)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as ``(rows, W, C)`` in the image's own dtype."""
        if self.layout is None:
            block = np.asarray(self.array[start:stop])
            return block[..., None] if block.ndim == 2 else block
        axes = self.layout.axes
        index = tuple(slice(start, stop) if a == "Y" else slice(None) if a in "XC" else 0
                      for a in axes)
        kept = [a for a in axes if a in "YXC"]
        block = np.transpose(np.asarray(self.array[index]),
                             [kept.index(a) for a in "YXC" if a in kept])
        return block[..., None] if block.ndim == 2 else block


def open_source(path: str | os.PathLike, axes: str | None = None) -> Source:
    """A lazily read image: TIFF/BigTIFF (tiled or strips) and zarr/OME-Zarr by blocks, anything
    else (PNG, JPEG, ...) in memory, through the one reader. ``axes``: a TIFF's axes
    (``--axes``), default the file's own."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    try:
        if path.is_dir() or path.suffix.lower() == ".zarr":
            node = zarr.open(str(path), mode="r")
        elif path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            layout = image_layout(path, axes)
            node = zarr.open(tifffile.imread(str(path), aszarr=True), mode="r")
            if isinstance(node, zarr.Group):
                node = node["0"] if "0" in node.array_keys() else node[sorted(node.array_keys())[0]]
            if tuple(node.shape) != tuple(layout.shape) or layout.alpha:
                return Source(read_image(path, axes), path.name)  # in memory, as read
            return Source(node, path.name, layout)
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
    total = total_sq = top = 0.0
    for y in range(0, h, strip):
        x = source.rows(y, min(y + strip, h)).astype(np.float64)
        total += float(x.sum())
        total_sq += float(np.square(x).sum())
        top = max(top, float(np.abs(x).max()) if x.size else 0.0)
    n = source.shape[0] * source.shape[1] * source.shape[2]
    mean = total / n
    std = math.sqrt(max(total_sq / n - mean * mean, 0.0))
    return float(np.float32(mean)), max(std, EPS * max(top, 1.0))  # as Normalizer.stats


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
