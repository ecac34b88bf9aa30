"""Mirror padding and the overlap-tile strategy (Ronneberger et al. 2015, Fig. 2).

A valid-padding U-Net sees ``margin`` px of context on each side of every output pixel. At image
borders that context is missing, so the paper extrapolates it by mirroring the image. The mirror
here does not repeat the edge pixel (NumPy's ``"reflect"``) and keeps reflecting for pads larger
than the image, so any image size works; :func:`mirror_indices` is the single definition used by
both the NumPy and the TensorFlow version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._compat import tf
from .model import Geometry

__all__ = [
    "mirror_indices",
    "mirror_pad",
    "tf_mirror_pad",
    "TilePlan",
    "plan_axis",
    "default_tile_size",
    "predict_tiled",
    "Predictor",
]


def mirror_indices(n: int, before: int, after: int) -> np.ndarray:
    """Source index of each position of an axis of length ``n`` mirror-padded by ``before``/``after``.

    Position ``i`` in ``[-before, n + after)`` reflects about the first and last pixel with period
    ``2 (n - 1)``; an axis of length 1 repeats its pixel.
    """
    i = np.arange(-before, n + after)
    if n == 1:
        return np.zeros_like(i)
    j = np.mod(i, 2 * (n - 1))
    return np.where(j < n, j, 2 * (n - 1) - j)


def mirror_pad(image: np.ndarray, pad: int | tuple[int, int, int, int]) -> np.ndarray:
    """Mirror-pad ``(H, W[, C])`` by ``pad`` px per side, or by ``(top, bottom, left, right)``."""
    t, b, l, r = (pad,) * 4 if isinstance(pad, int) else pad
    rows = mirror_indices(image.shape[0], t, b)
    cols = mirror_indices(image.shape[1], l, r)
    return image[rows[:, None], cols[None, :]]


def _tf_mirror_indices(n, before, after):
    i = tf.range(-before, n + after)
    period = tf.maximum(2 * (n - 1), 1)
    j = tf.math.floormod(i, period)
    return tf.where(j < n, j, 2 * (n - 1) - j)


def tf_mirror_pad(images, top, bottom, left, right):
    """TensorFlow version of :func:`mirror_pad` for a batch ``(B, H, W, C)``; pads may be tensors."""
    shape = tf.shape(images)
    rows = _tf_mirror_indices(shape[1], top, bottom)
    cols = _tf_mirror_indices(shape[2], left, right)
    return tf.gather(tf.gather(images, rows, axis=1), cols, axis=2)


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


def plan_axis(size: int, tile: int, geometry: Geometry, overlap: int = 0) -> TilePlan:
    """Tile placement along one axis of ``size`` px for input tiles of ``tile`` px."""
    f = geometry.factor
    out = geometry.check(tile, "tile size")
    if geometry.padding == "valid":
        stride = out - out % f
        if stride < 1:
            upper = geometry.nearest(geometry.input_size_for_output(f))[1]
            raise ValueError(
                f"tile size {tile} gives a {out} px output, smaller than the {f} px stride the "
                f"network needs; use a tile of at least {upper} px"
            )
        count = max(1, math.ceil(size / stride))
        total = (count - 1) * stride + tile
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
    """A tile that covers a small image in one pass, else one with about ``max_output`` px output."""
    want = min(max(shape), max_output)
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

    Args:
        model: a U-Net from :func:`keras_unet.build_unet` (or loaded from ``.keras``).
        image: normalised float ``(H, W)`` or ``(H, W, C)`` (see :func:`keras_unet.data.normalize`)
            with the channels the model takes.
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
    done = 0
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
        done += len(chunk)
        if progress is not None:
            progress(len(chunk))
    if geo.padding == "same":
        acc = acc / norm
        return acc[py.pad_before : py.pad_before + h, px.pad_before : px.pad_before + w]
    return acc[:h, :w]


class Predictor:
    """Class probabilities for raw images, from a ``.keras`` model or an exported SavedModel.

    * ``.keras`` (from ``keras-unet fit``): images are normalised as in training (``config.json``
      beside the model says how; per-image standardisation otherwise) and predicted with
      :func:`predict_tiled`.
    * a SavedModel folder (from ``keras-unet export``): its ``serving_default`` signature does the
      normalisation and padding itself; ``tile_size`` and ``tta`` do not apply.

    Call it with a raw ``(H, W)`` or ``(H, W, C)`` image of any dtype; it returns float32
    ``(H, W, n_classes)``.
    """

    def __init__(self, path, tile_size: int | None = None, batch_size: int = 4, tta: bool = False):
        import json
        from pathlib import Path

        from ._compat import keras

        self.path = Path(path)
        self.tile_size, self.batch_size, self.tta = tile_size, batch_size, tta
        if self.path.is_dir() and (self.path / "saved_model.pb").is_file():
            self.kind = "saved_model"
            self._serve = tf.saved_model.load(str(self.path)).signatures["serving_default"]
            spec = self._serve.structured_input_signature[1]["images"]
            self.channels = int(spec.shape[-1])
            self.n_classes = int(self._serve.structured_outputs["probabilities"].shape[-1])
            self.normalization = None
            return
        if not self.path.is_file() or self.path.suffix != ".keras":
            raise FileNotFoundError(
                f"{self.path} is neither a .keras model nor a SavedModel folder (with saved_model.pb)"
            )
        self.kind = "keras"
        try:
            self.model = keras.models.load_model(self.path)
        except Exception as exc:  # Keras raises many types for a broken file
            raise ValueError(f"cannot load {self.path}: {str(exc).splitlines()[0]}") from None
        config = self.path.with_name("config.json")
        self.normalization = (
            json.loads(config.read_text()).get("normalization", "image") if config.is_file() else "image"
        )
        self.channels = self.model.input_shape[-1]
        self.n_classes = self.model.output_shape[-1]
        if tile_size is not None:
            from .model import geometry_of

            geometry_of(self.model).check(tile_size, "tile size")

    def __call__(self, image: np.ndarray, name: str = "image", progress=None) -> np.ndarray:
        from .data import normalize

        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"{name}: expected a 2-D image, got shape {image.shape}")
        if image.shape[2] != self.channels:
            if self.channels == 1 and image.shape[2] == 3 and np.all(image == image[..., :1]):
                image = image[..., :1]  # grey stored as RGB
            else:
                raise ValueError(
                    f"{name}: the model takes {self.channels}-channel images, "
                    f"this one has {image.shape[2]}"
                )
        if self.kind == "saved_model":
            out = self._serve(images=tf.constant(image[None].astype(np.float32)))
            return out["probabilities"].numpy()[0]
        return predict_tiled(
            self.model, normalize(image, self.normalization), self.tile_size, self.batch_size,
            self.tta, progress=progress,
        )
