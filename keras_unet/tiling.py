"""The overlap-tile strategy (Ronneberger et al. 2015, Fig. 2): predict an image of any size.

A valid-padding U-Net sees ``margin`` px of context on each side of every output pixel. The image
is mirror-padded by that margin (:func:`keras_unet.preprocess.mirror_pad`) and cut into tiles whose
outputs are stitched. :func:`axis_plan` is the one tile placement rule: :func:`predict_tiled` uses
it with Python integers, the exported SavedModel's in-graph tiler
(:mod:`keras_unet.signatures`) with TensorFlow scalars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import Geometry
from .preprocess import mirror_pad

__all__ = [
    "TilePlan",
    "axis_plan",
    "plan_axis",
    "default_tile_size",
    "predict_tiled",
]


# --------------------------------------------------------------------------------------------
# Overlap-tile prediction


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image axis go.

    For valid padding, tiles of input size ``tile`` start every ``stride`` px of the image, which
    is mirror-padded by ``pad_before`` / ``pad_after``; each tile contributes the first ``keep``
    (= stride) px of its output. The stride is the tile's output size rounded down to a multiple of
    the network's down-sampling factor 2**(depth-1): only then does every tile see the same
    max-pooling grid as one pass over the whole padded image, so stitching is exact.
    For same padding, tiles overlap by ``tile - stride`` px and are blended.
    """

    size: int
    tile: int
    stride: int
    count: int
    pad_before: int
    pad_after: int


def axis_plan(size, tile, margin: int, factor: int):
    """Valid padding: ``(stride, count, total)`` of the tiles along an axis of ``size`` px.

    Tiles of ``tile`` px start every ``stride`` px of the image mirror-padded by ``margin`` before
    and ``total - size - margin`` after; ``count`` tiles cover the axis. ``size`` and ``tile`` may
    be Python integers or TensorFlow scalars (only ``-``, ``%``, ``//`` and ``*`` are used).
    """
    out = tile - 2 * margin
    stride = out - out % factor
    count = (size + stride - 1) // stride
    return stride, count, (count - 1) * stride + tile


def plan_axis(size: int, tile: int, geometry: Geometry, overlap: int = 0) -> TilePlan:
    """Tile placement along one axis of ``size`` px for input tiles of ``tile`` px."""
    f = geometry.factor
    out = geometry.check(tile, "tile size")
    if geometry.padding == "valid":
        if out < f:
            upper = geometry.nearest(geometry.input_size_for_output(f))[1]
            raise ValueError(
                f"tile size {tile} gives a {out} px output, smaller than the {f} px stride the "
                f"network needs; use a tile of at least {upper} px"
            )
        stride, count, total = axis_plan(max(size, 1), tile, geometry.margin, f)
        return TilePlan(size, tile, stride, count, geometry.margin, total - size - geometry.margin)
    # same padding: overlapping tiles, blended; mirror context of half the overlap at the borders
    stride = max(f, tile - overlap - (tile - overlap) % f)
    half = (tile - stride) // 2
    count = max(1, math.ceil((size + 2 * half - tile) / stride) + 1) if size + 2 * half > tile else 1
    total = (count - 1) * stride + tile
    return TilePlan(size, tile, stride, count, half, total - size - half)


def _blend_window(tile: int, stride: int) -> np.ndarray:
    """1-D blending weights: flat in the middle, linear ramps over the overlap, never 0."""
    ramp = tile - stride
    w = np.ones(tile, np.float32)
    if ramp > 0:
        edge = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
        w[:ramp] = edge
        w[-ramp:] = edge[::-1]
    return w


def default_tile_size(model_geometry: Geometry, shape: tuple[int, int], max_output: int = 512) -> int:
    """A tile that covers a small image in one pass, else one with about ``max_output`` px output;
    at least the network's stride of output, so that an image of a few pixels is predicted too."""
    want = max(min(max(shape), max_output), model_geometry.factor)
    if model_geometry.padding == "same":
        f = model_geometry.factor
        return max(f, math.ceil(want / f) * f)
    return model_geometry.input_size_for_output(want)


TTA_TRANSFORMS = 8  # the dihedral group: 4 rotations x optional flip


def _dihedral(x: np.ndarray, k: int, inverse: bool = False) -> np.ndarray:
    """Apply (or undo) transform ``k`` in 0..7 to the two spatial axes of ``(B, H, W, C)``."""
    rot, flip = k % 4, k >= 4
    if not inverse:
        x = x[:, :, ::-1] if flip else x
        return np.rot90(x, rot, axes=(1, 2))
    x = np.rot90(x, -rot, axes=(1, 2))
    return x[:, :, ::-1] if flip else x


def predict_tiled(
    model,
    image: np.ndarray,
    tile_size: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    overlap: int | None = None,
    progress=None,
) -> np.ndarray:
    """Predict an image of any size with the overlap-tile strategy (Ronneberger et al. Fig. 2).

    Takes the **network input**, not a raw image: a raw image goes through the model's own
    preprocessing first, ``predict_tiled(model, normalizer_of(model)(raw))``, or use
    :class:`keras_unet.Predictor` / :func:`keras_unet.predict_instances`, which take raw images
    as the command line does. An integer (or bool) image is refused, since it cannot be a
    normalised one.

    Args:
        model: a U-Net from :func:`keras_unet.build_unet` (or loaded from ``.keras``).
        image: normalised float ``(H, W)`` or ``(H, W, C)`` with the channels the model takes
            (apply :func:`keras_unet.preprocess.normalizer_of` ``(model)`` to a raw image).
        tile_size: input tile size in px (validated); default: one tile for small images, else
            tiles with about 512 px output.
        batch_size: tiles per forward pass; memory is bounded by this batch, not by the image.
        tta: average over the 8 flips and 90-degree rotations (test-time augmentation).
        overlap: same padding only: px of overlap between tiles (default a quarter tile).
        progress: called with the number of tiles done after each batch.

    Returns:
        float32 ``(H, W, n_classes)`` class probabilities.

    For valid padding the result equals one pass of the network over the whole mirror-padded image
    (up to float rounding): no seams. Same-padding networks blend overlapping tiles linearly.
    """
    from .model import geometry_of

    geo = geometry_of(model)
    if np.asarray(image).dtype.kind in "uib":
        raise ValueError(
            f"predict_tiled takes the network input (normalised float), got a raw "
            f"{np.asarray(image).dtype} image; use keras_unet.Predictor(model)(image) or "
            "predict_instances(model, image), or predict_tiled(model, normalizer_of(model)(image))")
    x = np.asarray(image, np.float32)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"image must be (height, width[, channels]), got shape {x.shape}")
    channels = model.input_shape[-1]
    if channels is not None and x.shape[2] != channels:
        raise ValueError(
            f"the model takes {channels}-channel images, but this image has {x.shape[2]}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    h, w = x.shape[:2]
    tile = tile_size or default_tile_size(geo, (h, w))
    if overlap is None:
        overlap = tile // 4 if geo.padding == "same" else 0
    py, px = plan_axis(h, tile, geo, overlap), plan_axis(w, tile, geo, overlap)
    padded = mirror_pad(x, (py.pad_before, py.pad_after, px.pad_before, px.pad_after))
    starts = [(i * py.stride, j * px.stride) for i in range(py.count) for j in range(px.count)]

    n_classes = model.output_shape[-1]
    if geo.padding == "same":  # blend over the whole padded image
        acc = np.zeros(padded.shape[:2] + (n_classes,), np.float32)
        norm = np.zeros(padded.shape[:2] + (1,), np.float32)
        window = np.outer(_blend_window(tile, py.stride), _blend_window(tile, px.stride))[..., None]
    else:  # each tile fills its stride x stride block
        acc = np.zeros((py.count * py.stride, px.count * px.stride, n_classes), np.float32)
    transforms = range(TTA_TRANSFORMS) if tta else range(1)
    for b in range(0, len(starts), batch_size):
        chunk = starts[b : b + batch_size]
        tiles = np.stack([padded[y : y + tile, x0 : x0 + tile] for y, x0 in chunk])
        probs = 0.0
        for k in transforms:
            pred = np.asarray(model.predict_on_batch(_dihedral(tiles, k).copy()), np.float32)
            probs = probs + _dihedral(pred, k, inverse=True)
        probs = probs / len(transforms)
        for (y, x0), p in zip(chunk, probs):
            if geo.padding == "same":
                acc[y : y + tile, x0 : x0 + tile] += p * window
                norm[y : y + tile, x0 : x0 + tile] += window
            else:
                acc[y : y + py.stride, x0 : x0 + px.stride] = p[: py.stride, : px.stride]
        if progress is not None:
            progress(len(chunk))
    if geo.padding == "same":
        acc = acc / norm
        return acc[py.pad_before : py.pad_before + h, px.pad_before : px.pad_before + w]
    return acc[:h, :w]
