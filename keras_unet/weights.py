"""Weight maps of the U-Net paper (Ronneberger et al. 2015, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

* ``w_c`` balances class frequencies (see ``class_weights`` below);
* ``d1``, ``d2``: Euclidean distance (px) from a background pixel to the nearest pixel of the
  nearest and of the second-nearest object, as an exact Euclidean distance transform measures it
  (a background pixel next to an object has d = 1). The border term applies to background pixels
  only and is 0 where fewer than two objects exist.
* the paper uses ``w0 = 10`` and ``sigma ~ 5`` px.

**Speed.** The naive method needs one distance transform of the whole image per object. Here each
object gets an exact distance transform only inside its bounding box grown by ``T`` px, where
``T`` is the distance beyond which the border term is below ``tol`` (1e-4 by default, 24 px for
the paper's w0 and sigma). Two running minima keep d1 and d2. Contributions beyond ``T`` are
dropped, so the map differs from the exact formula by less than ``tol``.

**Large masks** are done in bands of rows (``BLOCK_PIXELS`` at a time, each with ``T`` px of
context above and below), which gives the same map with a band's worth of working memory.

**Multi-class masks.** The border term separates *instances*, whatever their class: pass instance
ids (one id per object over all classes) and the class map separately as ``classes``; ``w_c``
then balances those classes.

Everything here is NumPy in, NumPy out, pure and deterministic, so maps can be precomputed once per
training image and cached (as the paper does).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from collections import deque
from typing import Callable, Iterable, Iterator, Mapping

import cv2
import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "unet_weight_map",
    "class_weight_map",
    "border_weights",
    "instances_from_mask",
    "to_instances",
    "looks_binary",
    "truncation_distance",
]


BLOCK_PIXELS = 8_000_000  # masks larger than this get their border weights band by band


def truncation_distance(w0: float, sigma: float, tol: float = 1e-4) -> float:
    """Largest ``d1 + d2`` (px) at which the border term is still >= ``tol``."""
    if w0 <= tol:
        return 0.0
    return sigma * math.sqrt(2.0 * math.log(w0 / tol))


def _check_instances(instance_labels, name: str = "instance_labels") -> np.ndarray:
    labels = np.asarray(instance_labels)
    if labels.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (height, width), got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError(f"{name} is empty (shape {labels.shape})")
    if labels.dtype == bool:
        raise ValueError(
            f"{name} is a boolean mask, not instance ids: split it into objects first with "
            "keras_unet.weights.instances_from_mask(mask)"
        )
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError(
                f"{name} holds non-integer values; instance ids must be whole numbers "
                "(0 = background, 1..N = objects)"
            )
    elif labels.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer ids, got dtype {labels.dtype}")
    if labels.min() < 0:
        raise ValueError(f"{name} holds negative ids (min {labels.min()}); use 0 for background")
    if labels.dtype.kind in "iu" and labels.dtype.itemsize <= 4 and labels.dtype != np.uint32:
        return labels  # no wider copy of a large mask
    return labels.astype(np.int64, copy=False)


def border_weights(
    instance_labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0, tol: float = 1e-4
) -> np.ndarray:
    """The border term ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` alone, float32 ``(H, W)``.

    0 on object pixels and wherever fewer than two objects exist; exact up to ``tol``.
    """
    labels = _check_instances(instance_labels)
    _check_w0_sigma(w0, sigma)
    h, w = labels.shape
    reach = int(math.ceil(truncation_distance(w0, sigma, tol))) + 1
    rows = max(4 * reach, BLOCK_PIXELS // max(w, 1))
    if h <= rows + 2 * reach or w0 == 0:
        return _border_block(labels, w0, sigma, reach)
    # A large mask, block by block: a band of rows plus ``reach`` px above and below holds every
    # object pixel within ``reach`` of the band, so each band's weights are exactly the whole
    # mask's, and only a band's worth of working memory is needed at a time.
    out = np.empty((h, w), np.float32)
    for r0 in range(0, h, rows):
        a, b = max(0, r0 - reach), min(h, r0 + rows + reach)
        band = _border_block(labels[a:b], w0, sigma, reach)
        out[r0:r0 + rows] = band[r0 - a:r0 - a + rows]
    return out


def _border_block(labels: np.ndarray, w0: float, sigma: float, reach: int) -> np.ndarray:
    """:func:`border_weights` of one block of a mask (all of it, or a band with its halo)."""
    h, w = labels.shape
    seq = _compact_ids(labels)
    out = np.zeros((h, w), np.float32)
    if w0 == 0 or np.count_nonzero(np.bincount(seq.ravel())[1:]) < 2:
        return out

    best1 = np.full((h, w), np.inf, np.float32)
    best2 = np.full((h, w), np.inf, np.float32)
    windows = []  # (object id, y0, y1, x0, x1): its bounding box grown by ``reach``
    for k, sl in enumerate(ndi.find_objects(seq), start=1):
        if sl is not None:
            windows.append((k, max(sl[0].start - reach, 0), min(sl[0].stop + reach, h),
                            max(sl[1].start - reach, 0), min(sl[1].stop + reach, w)))
    # Horizontal bands, one per thread; each merges only its own rows, so no two threads write
    # the same pixel. OpenCV and NumPy release the GIL for the heavy parts.
    n_bands = min(_threads(), max(1, len(windows) // 32), max(1, h // 64))
    edges = np.linspace(0, h, n_bands + 1).astype(int)
    bands = list(zip(edges[:-1], edges[1:]))

    def merge_band(band: tuple[int, int]) -> None:
        r0, r1 = band
        for k, y0, y1, x0, x1 in windows:
            if y1 <= r0 or y0 >= r1:
                continue
            # Exact EDT: distance of every window pixel to the nearest pixel of object k.
            src = np.not_equal(seq[y0:y1, x0:x1], k).view(np.uint8)
            d = cv2.distanceTransform(src, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            a, b = max(y0, r0), min(y1, r1)
            d = _snap(d[a - y0 : b - y0], reach)
            b1, b2 = best1[a:b, x0:x1], best2[a:b, x0:x1]  # views: updated in place
            np.minimum(b2, np.maximum(b1, d), out=b2)
            np.minimum(b1, d, out=b1)

    if len(bands) == 1:
        merge_band(bands[0])
    else:
        with ThreadPoolExecutor(len(bands)) as pool:
            list(pool.map(merge_band, bands))

    background = seq == 0
    s = best1[background] + best2[background]
    out[background] = w0 * np.exp(-(s * s) / np.float32(2.0 * sigma * sigma))
    return out


def _snap(d: np.ndarray, reach: int) -> np.ndarray:
    """Exact distances from OpenCV's: ``sqrt`` of the nearest whole squared distance.

    OpenCV's float result depends, in its last bits, on how its thread pool split the work, so
    calls running side by side may differ. Squared distances between pixel centres are whole
    numbers, so rounding ``d**2`` recovers them exactly (the error is far below 0.5 for
    ``d <= reach``) and ``sqrt`` is correctly rounded everywhere. Distances beyond ``reach``
    contribute less than ``tol`` and are dropped (set to infinity).
    """
    d2 = np.rint(np.square(d, out=d), out=d)
    d2[d2 > float(reach * reach)] = np.inf
    return np.sqrt(d2, out=d2)


def _threads() -> int:
    """Threads for the weight map: the CPUs this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _compact_ids(labels: np.ndarray) -> np.ndarray:
    """int32 ids that ``find_objects`` can index: kept as they are unless they are huge."""
    if labels.max() <= 4 * labels.size + 65536:
        return labels.astype(np.int32, copy=False)
    _, inverse = np.unique(labels, return_inverse=True)  # sparse huge ids: renumber 0..N
    seq = inverse.reshape(labels.shape).astype(np.int32)
    return seq if labels.min() == 0 else seq + 1


def _check_w0_sigma(w0: float, sigma: float) -> None:
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma!r}")
    if not np.isfinite(w0) or w0 < 0:
        raise ValueError(f"w0 must be a finite number >= 0, got {w0!r}")


def class_weight_map(
    classes: np.ndarray,
    class_weights: str | Mapping[int, float] | None = "balanced",
) -> np.ndarray:
    """``w_c(x)`` for a class map, float32 ``(H, W)``.

    Args:
        classes: integer class ids ``(H, W)``.
        class_weights: ``None`` (1 everywhere); ``"balanced"``: inverse class frequency,
            ``w_c(k) = N / (K * N_k)`` over the K classes present, so the map's mean is 1; or a
            mapping ``{class: weight}`` that must name every class present.
    """
    classes = np.asarray(classes)
    if class_weights is None:
        return np.ones(classes.shape, np.float32)
    values, inverse, counts = np.unique(classes, return_inverse=True, return_counts=True)
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(
                f"class_weights must be None, 'balanced' or a {{class: weight}} mapping, "
                f"got {class_weights!r}"
            )
        per_class = classes.size / (len(values) * counts.astype(np.float64))
    else:
        missing = [int(v) for v in values if int(v) not in class_weights]
        if missing:
            raise ValueError(f"class_weights has no weight for class(es) {missing}")
        per_class = np.array([float(class_weights[int(v)]) for v in values])
        if np.any(per_class < 0) or not np.all(np.isfinite(per_class)):
            raise ValueError(f"class weights must be finite and >= 0, got {dict(class_weights)}")
    return per_class.astype(np.float32)[inverse.reshape(classes.shape)]


def unet_weight_map(
    instance_labels: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: str | Mapping[int, float] | None = "balanced",
    classes: np.ndarray | None = None,
    tol: float = 1e-4,
) -> np.ndarray:
    """The paper's weight map ``w(x) = w_c(x) + w0 * exp(-(d1 + d2)**2 / (2 sigma**2))``.

    Args:
        instance_labels: integer ``(H, W)``, 0 = background, 1..N = one id per object (ids need
            not be consecutive). Use :func:`instances_from_mask` for binary masks.
        w0: border weight (paper: 10).
        sigma: border width in px (paper: about 5).
        class_weights: ``w_c``: None, ``"balanced"`` or ``{class: weight}``
            (see :func:`class_weight_map`).
        classes: class ids ``(H, W)`` for ``w_c``; default foreground (id > 0) vs background.
        tol: largest allowed error of the truncated border term.

    Returns:
        float32 ``(H, W)`` weight map.

    Raises:
        ValueError: for a non-2-D array, non-integer or negative ids, a boolean mask,
            ``sigma <= 0`` or ``w0 < 0``.
    """
    labels = _check_instances(instance_labels)
    _check_w0_sigma(w0, sigma)
    if classes is None:
        classes = (labels > 0).astype(np.int32)
    elif np.shape(classes) != labels.shape:
        raise ValueError(
            f"classes has shape {np.shape(classes)} but instance_labels has shape {labels.shape}"
        )
    return class_weight_map(classes, class_weights) + border_weights(labels, w0, sigma, tol)


def instances_from_mask(
    mask: np.ndarray, connectivity: int = 4, foreground: int | None = None
) -> np.ndarray:
    """Split a binary mask into objects by connected components.

    Args:
        mask: ``(H, W)`` bool, 0/1 or 0/255 (e.g. ISBI 2012 masks: 255 = cell interior,
            0 = membrane). Any non-zero value is foreground unless ``foreground`` is given.
        connectivity: 4 (default; objects touching only at a corner stay apart) or 8.
        foreground: the value that marks foreground, if not "non-zero".

    Returns:
        int32 instance labels ``(H, W)``: 0 = background, 1..N.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D array (height, width), got shape {mask.shape}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    fg = (mask == foreground) if foreground is not None else (mask != 0)
    _, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=connectivity)
    return labels.astype(np.int32)


def looks_binary(mask: np.ndarray) -> bool:
    """Whether a mask is binary: bool, or its only values are within {0, 1} or {0, 255}."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return True
    values = set(np.unique(mask).tolist()) if mask.size else set()
    return values <= {0, 1} or values <= {0, 255}


def to_instances(mask: np.ndarray, mask_type: str = "auto") -> np.ndarray:
    """Instance labels from a mask as users have it.

    ``mask_type``: ``"binary"`` (connected components of the non-zero pixels), ``"instance"``
    (ids as given, e.g. a 16-bit label PNG/TIFF), or ``"auto"``: bool masks and masks whose only
    values are {0, 1} or {0, 255} are binary, anything else is taken as instance ids.
    """
    mask = np.asarray(mask)
    if mask_type not in ("auto", "binary", "instance"):
        raise ValueError(f"mask_type must be 'auto', 'binary' or 'instance', got {mask_type!r}")
    if mask_type == "auto":
        mask_type = "binary" if looks_binary(mask) else "instance"
    if mask_type == "binary":
        return instances_from_mask(mask)
    return _check_instances(mask, "mask").astype(np.int32)


def ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """``map(fn, items)`` on a pool of ``workers`` threads, results in order, with at most
    ``2 * workers`` items in flight (so memory holds a few images, not all of them)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
