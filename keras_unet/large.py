"""Images larger than memory: predict strip by strip, from and to tiled TIFF or zarr.

:func:`predict_large` reads the input lazily, one strip of rows at a time with the network
margin around it (tiled or strip TIFF / BigTIFF through ``tifffile``'s zarr store, zarr and
OME-Zarr arrays, or a plain image held in memory), predicts the strip with exactly the tiles
:func:`keras_unet.tiling.predict_tiled` would use on the whole image, and writes the outputs by
strip: a tiled BigTIFF (or a zarr array for zarr input) for the mask, optionally the object
probability (uint8, 0..255) and the instance labels. Nothing of image size is held in memory;
memory depends on the image *width* and the strip height only.

* **Same answer.** The tiles, their mirror padding at the image border and the normalisation are
  the whole-image ones, so the mask equals ``predict_tiled``'s.
* **Normalisation** needs statistics of the whole image for per-image modes: ``"image"`` takes the
  mean and standard deviation in a streaming first pass over the strips (exact, float64 sums);
  ``"percentile"`` estimates its percentiles from a regular subsample of at most 4 million pixels
  (also a first pass); ``"fixed"`` needs no pass.
* **Instances** are labelled per strip (threshold, 4-connected components) and joined along the
  strip seams with a union-find, so an object cut by a seam keeps one id; small objects are removed
  by their whole size. A second pass over the provisional labels (a temporary zarr store beside the
  output) finishes the object step in windows of rows: each window is widened to hold every
  object near its rows whole, plus a halo of context, and there holes are filled, objects cut at
  necks (``split_depth``) and the separating borders given back. So the objects, and their ids
  (1..N in raster order), are those of :func:`keras_unet.instances.label_instances` on the
  whole image; a window is as tall as its tallest object. Holes bounded by objects that lie
  far from a window are not filled, and ``watershed`` splitting is not available here.
* **Throughput.** A reader thread prefetches the next strip and writer threads store the finished
  ones while the network works on the current one.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from scipy import ndimage as ndi

from ._compat import keras
from .files import check_writable
from .instances import fill_object_holes, grow_into_gaps, label_dtype, split_at_necks
from .lazyio import (  # noqa: F401  (open_source and image_pixels re-exported)
    BLOCKWISE_PIXELS,
    TIFF_TILE,
    StripWriter,
    image_pixels,
    open_source,
    streamed_stats,
)
from .model import geometry_of
from .preprocess import mirror_indices, normalizer_of
from .tiling import default_tile_size, plan_axis

__all__ = ["predict_large", "open_source", "LargeReport", "BLOCKWISE_PIXELS", "image_pixels"]

# ---------------------------------------------------------------------------------------------
# Predicting


@dataclass
class LargeReport:
    """What :func:`predict_large` wrote, and how fast."""

    outputs: dict[str, Path] = field(default_factory=dict)
    shape: tuple[int, int] = (0, 0)
    seconds: float = 0.0
    objects: int | None = None

    @property
    def megapixels_per_second(self) -> float:
        return self.shape[0] * self.shape[1] / 1e6 / max(self.seconds, 1e-9)


def _strip_rows(width: int, stride: int, strip_pixels: int) -> int:
    """Tile rows per strip: about ``strip_pixels`` output pixels, at least one tile row."""
    return max(1, strip_pixels // max(1, width * stride))


def _prefetch(reader: Callable[[int], object], count: int) -> Iterator[object]:
    """``reader(i)`` for i in range(count), each computed in a thread one step ahead."""
    results: queue.Queue = queue.Queue(maxsize=1)

    def run() -> None:
        for i in range(count):
            try:
                results.put((reader(i), None))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                results.put((None, exc))
                return

    threading.Thread(target=run, daemon=True).start()
    for _ in range(count):
        value, error = results.get()
        if error is not None:
            raise error
        yield value


def predict_large(
    model: keras.Model,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    tile_size: int | None = None,
    batch_size: int = 4,
    instances: dict | None = None,
    probabilities: bool = False,
    strip_pixels: int = 4_000_000,
    progress: Callable[[int], None] | None = None,
    axes: str | None = None,
) -> LargeReport:
    """Predict an image of any size strip by strip, from and to files (see the module docs).

    Args:
        model: a valid-padding U-Net (a loaded ``.keras`` model) carrying its preprocessing.
        src: a TIFF/BigTIFF, a zarr or OME-Zarr folder, or any image file.
        dst: the output folder: ``NAME_mask.tif`` (tiled BigTIFF, 0/255 for two classes),
            ``NAME_probabilities.tif`` (object probability as uint8 0..255, with
            ``probabilities``) and ``NAME_instances.tif`` (uint16/uint32 labels, with
            ``instances``); ``.zarr`` arrays instead for zarr input.
        tile_size: input tile size in px, as :func:`keras_unet.tiling.predict_tiled` (same
            default tile).
        batch_size: tiles per forward pass, as :func:`keras_unet.tiling.predict_tiled`.
        instances: keyword arguments of :func:`keras_unet.instances.label_instances`
            (``threshold``, ``min_size``, ``border_width``, ``split_depth``), or None for no
            instances.
        probabilities: also write the object probability (``NAME_probabilities.tif``).
        strip_pixels: output pixels per strip, at least one row of tiles (memory: about 10 bytes
            each, plus the model's and one batch of tiles).
        progress: called with the number of image pixels finished after each strip.
        axes: a TIFF's axes (``--axes``), default the file's own
            (:func:`keras_unet.images.read_stack`).

    Raises:
        ValueError: as whole-image prediction, e.g. for NaN pixels or values the model's
            training never meant (:meth:`keras_unet.preprocess.Normalizer.check`); the outputs
            begun are removed.

    Returns:
        A :class:`LargeReport`.
    """
    import time

    start = time.perf_counter()
    geo = geometry_of(model)
    if geo.padding != "valid":
        raise ValueError("block-wise prediction needs a valid-padding network")
    if instances and instances.get("watershed_split"):
        raise ValueError("--watershed is not available for block-wise prediction")
    n_classes = int(model.output_shape[-1])
    if (instances or probabilities) and n_classes != 2:
        raise ValueError("instances and probabilities need a two-class model")
    source = open_source(src, axes)
    h, w, _ = source.shape
    normalizer = normalizer_of(model)
    tile = tile_size or default_tile_size(geo, (h, w))
    py, px = plan_axis(h, tile, geo), plan_axis(w, tile, geo)
    s = py.stride
    rows_idx = mirror_indices(h, py.pad_before, py.pad_after)
    cols_idx = mirror_indices(w, px.pad_before, px.pad_after)
    per_strip = _strip_rows(px.count * s, s, strip_pixels)
    n_strips = math.ceil(py.count / per_strip)
    stats = streamed_stats(source, normalizer, per_strip * s)

    out = Path(dst)
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(src).stem if not Path(src).is_dir() else Path(src).name.removesuffix(".zarr")
    kind = "zarr" if (Path(src).is_dir() or Path(src).suffix.lower() == ".zarr") else "tiff"
    suffix = ".zarr" if kind == "zarr" else ".tif"
    report = LargeReport(shape=(h, w))
    writers = {"mask": StripWriter(out / f"{stem}_mask{suffix}", (h, w), np.uint8, kind)}
    if probabilities:
        writers["probabilities"] = StripWriter(out / f"{stem}_probabilities{suffix}", (h, w),
                                           np.uint8, kind)
    labeller = _StripLabeller(out / f".{stem}_labels.partial.zarr", (h, w), instances) \
        if instances else None

    threshold = (instances or {}).get("threshold", 0.5)

    def read(i: int) -> tuple[int, np.ndarray]:
        t0, t1 = i * per_strip, min((i + 1) * per_strip, py.count)
        rows = rows_idx[t0 * s:(t1 - 1) * s + tile]
        raw = source.rows(int(rows.min()), int(rows.max()) + 1)[rows - rows.min()][:, cols_idx]
        raw = normalizer.channels_of(raw, source.name)
        normalizer.check(raw, source.name)  # refusals only: a warning per strip would repeat
        return t0, raw

    def normalize(block: np.ndarray) -> np.ndarray:  # elementwise: the same numbers as whole
        return normalizer.apply(block, stats)

    try:
        for t0, raw in _prefetch(read, n_strips):
            y0 = t0 * s
            classes, prob, fg = _predict_strip(model, raw, normalize, tile, s, px.count,
                                               batch_size, n_classes, threshold)
            rows = min(h - y0, len(classes))
            writers["mask"].put(y0, (classes * 255 if n_classes == 2 else classes)[:rows, :w])
            if probabilities:
                writers["probabilities"].put(y0, prob[:rows, :w])
            if labeller:
                labeller.add(y0, fg[:rows, :w])
            if progress:
                progress(rows * w)
        for writer in writers.values():
            writer.close()
        for name, writer in writers.items():
            report.outputs[name] = writer.path
        if labeller:
            path = out / f"{stem}_instances{suffix}"
            report.objects = labeller.finish(path, kind)
            report.outputs["instances"] = path
    except BaseException:  # nothing half-written is left behind
        for writer in writers.values():
            for _ in range(2):  # the end mark; again for a writer that failed and drains
                if writer.thread.is_alive():
                    writer.queue.put(None)
                    writer.thread.join(timeout=10)
        for path in [w.path for w in writers.values()] + list(report.outputs.values()):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise
    finally:
        for writer in writers.values():
            if writer.thread.is_alive():
                writer.queue.put(None)
        if labeller:
            shutil.rmtree(labeller.path, ignore_errors=True)
    report.seconds = time.perf_counter() - start
    return report


def _predict_strip(model, raw: np.ndarray, normalize: Callable, tile: int, stride: int,
                   n_cols: int, batch_size: int, n_classes: int, threshold: float | None):
    """One strip of tile rows, each tile's first ``stride`` x ``stride`` output block stitched as
    :func:`keras_unet.tiling.predict_tiled` stitches them. Tiles are normalised one by one, so
    no float copy of the strip is kept. Returns uint8 class ids, the object probability as uint8
    0..255 and the object mask (probability above ``threshold``, or the argmax if None)."""
    n_rows = (len(raw) - tile) // stride + 1
    starts = [(i * stride, j * stride) for i in range(n_rows) for j in range(n_cols)]
    shape = (n_rows * stride, n_cols * stride)
    classes, prob, fg = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8), np.zeros(shape, bool)
    for b in range(0, len(starts), batch_size):
        chunk = starts[b:b + batch_size]
        tiles = np.stack([normalize(raw[y:y + tile, c:c + tile]) for y, c in chunk])
        probs = np.asarray(model.predict_on_batch(tiles), np.float32)
        for (y, c), p in zip(chunk, probs):
            q, block = p[:stride, :stride], (slice(y, y + stride), slice(c, c + stride))
            classes[block] = q.argmax(-1)
            if n_classes == 2:
                prob[block] = np.round(q[..., 1] * 255)
                fg[block] = q[..., 1] > threshold if threshold is not None else classes[block] == 1
    return classes, prob, fg


# ---------------------------------------------------------------------------------------------
# Instances across strips


class _StripLabeller:
    """Connected components strip by strip, joined along the seams, then the rest of the object
    step in windows of rows (see the module docs)."""

    #: px of context beyond the objects a window finishes: the neck cut reads the distances
    #: within 4 * SPLIT_SMOOTHING px of an object, and those depend on pixels a few px farther
    HALO = 32
    #: piece ids of a cut object: object id * PIECES + its piece's rank
    PIECES = 1 << 20

    def __init__(self, path: Path, shape: tuple[int, int], settings: dict):
        import zarr

        self.path, self.shape = path, shape
        self.min_size = int(settings.get("min_size", 0))
        self.border = int(settings.get("border_width", 0))
        self.fill = settings.get("fill_holes", True)
        self.depth = float(settings.get("split_depth", 0.0) or 0.0)
        self.store = zarr.open(str(path), mode="w", shape=shape, dtype=np.uint32,
                               chunks=(TIFF_TILE, TIFF_TILE))
        self.count, self.sizes, self.pairs, self.last_row = 0, [np.zeros(1, np.int64)], [], None
        self.tops, self.bottoms = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)]

    def add(self, y0: int, fg: np.ndarray) -> None:
        """Label the object mask ``fg`` (bool rows from ``y0`` on)."""
        labels, n = ndi.label(fg, ndi.generate_binary_structure(2, 1))
        rows = [(sl[0].start, sl[0].stop - 1) for sl in ndi.find_objects(labels)] or [(0, 0)]
        self.tops.append(y0 + np.array([r[0] for r in rows], np.int64)[:n])
        self.bottoms.append(y0 + np.array([r[1] for r in rows], np.int64)[:n])
        labels = np.where(labels > 0, labels + self.count, 0).astype(np.uint32)
        if self.last_row is not None:
            both = (self.last_row > 0) & (labels[0] > 0)
            self.pairs.append(np.stack([self.last_row[both], labels[0][both]], 1))
        self.sizes.append(np.bincount(labels.ravel(), minlength=self.count + n + 1)[self.count + 1:])
        self.count += n
        self.last_row = labels[-1]
        self.store[y0:y0 + len(labels)] = labels

    def finish(self, path: Path, kind: str) -> int:
        """Join, drop small objects, fill holes, cut at necks, grow into gaps; write ``path``.
        The number of objects.

        The ids are those :func:`keras_unet.instances.label_instances` gives the whole image:
        1..N in raster order of first appearance."""
        import zarr
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        n = self.count + 1
        pairs = np.concatenate(self.pairs) if self.pairs else np.zeros((0, 2), np.int64)
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        _, component = connected_components(graph, directed=False)
        sizes = np.bincount(component, weights=np.concatenate(self.sizes), minlength=n)
        keep = sizes >= max(self.min_size, 1)
        keep[component[0]] = False  # the background
        first = np.full(component.max() + 1, n, np.int64)  # raster order of first appearance
        np.minimum.at(first, component, np.arange(n))
        kept = np.flatnonzero(keep)
        final = np.zeros(component.max() + 1, np.int64)
        final[kept[np.argsort(first[kept])]] = np.arange(1, len(kept) + 1)
        lut = final[component]
        # each object's first and last row, to finish it in a window that holds all of it
        top, bottom = np.full(len(kept) + 1, self.shape[0], np.int64), np.full(len(kept) + 1, -1)
        np.minimum.at(top, lut, np.concatenate(self.tops))
        np.maximum.at(bottom, lut, np.concatenate(self.bottoms))
        pieces_path = self.path.with_name(self.path.name + ".pieces")
        pieces = zarr.open(str(pieces_path), mode="w", shape=self.shape, dtype=np.uint64,
                           chunks=(TIFF_TILE, TIFF_TILE))
        h, step, reach = self.shape[0], 4 * TIFF_TILE, 2 * self.border + 2
        order: list[np.ndarray] = []  # piece ids in raster order of first appearance
        seen = np.zeros(0, np.uint64)
        try:
            for y0 in range(0, h, step):
                y1 = min(h, y0 + step)
                a, b = max(0, y0 - reach), min(h, y1 + reach)
                if self.depth > 0:  # widen the window to the whole objects near the core
                    near = (top[1:] < b) & (bottom[1:] >= a)
                    if near.any():
                        a, b = min(a, int(top[1:][near].min())), max(b, int(bottom[1:][near].max()) + 1)
                    a, b = max(0, a - self.HALO), min(h, b + self.HALO)
                window = self._finish_window(lut[np.asarray(self.store[a:b])])
                core = window[y0 - a:y1 - a]
                pieces[y0:y1] = core
                ids, at = np.unique(core.ravel(), return_index=True)
                new = ~np.isin(ids, seen) & (ids > 0)
                fresh = ids[new][np.argsort(at[new])]
                order.append(fresh)
                seen = np.union1d(seen, fresh)
            order_all = np.concatenate(order) if order else np.zeros(0, np.uint64)
            keys = np.argsort(order_all)
            sorted_ids = order_all[keys]
            number = (keys + 1).astype(np.int64)  # the sequential id of each sorted piece id
            dtype = label_dtype(len(order_all))
            writer = StripWriter(path, self.shape, dtype, kind)
            try:
                for y0 in range(0, h, step):
                    block = np.asarray(pieces[y0:y0 + step]).astype(np.uint64)
                    where = np.searchsorted(sorted_ids, block)
                    out = np.where(block > 0, number[np.minimum(where, max(len(number) - 1, 0))]
                                   if len(number) else 0, 0)
                    writer.put(y0, out.astype(dtype))
            finally:
                writer.close()
        finally:
            shutil.rmtree(pieces_path, ignore_errors=True)
        return len(order_all)

    def _finish_window(self, window: np.ndarray) -> np.ndarray:
        """Holes, necks and gaps of a window of rows of object ids: piece ids (uint64) that name
        the object and the piece's rank in it, so that any window holding the whole object
        names its pieces alike."""
        if self.fill:
            window = fill_object_holes(window)
        window = window.astype(np.uint64)
        if self.depth > 0 and window.any():
            cut = split_at_necks(window, self.depth)
            ids, at = np.unique(cut.ravel(), return_index=True)
            owner = window.ravel()[at]
            ranked = np.lexsort((at, owner))  # by object, then raster order in it
            rank = np.zeros(len(ids), np.uint64)
            counts = np.bincount(owner[ranked].astype(np.int64))
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            rank[ranked] = (np.arange(len(ids)) - starts[owner[ranked].astype(np.int64)]
                            ).astype(np.uint64)
            code = np.where(owner > 0, owner * np.uint64(self.PIECES) + rank, 0).astype(np.uint64)
            window = code[np.searchsorted(ids, cut)]
        else:
            window = window * np.uint64(self.PIECES)
        return grow_into_gaps(window, self.border)
