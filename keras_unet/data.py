"""The training set as held, and the tf.data pipeline of training and validation tiles.

Training tiles follow the paper's overlap-tile strategy: the image is mirror-padded by the network
margin, a random output window is chosen inside the image, and the input tile is that window grown
by the margin; labels and weight maps are cut to the output window directly (never by running the
model). Images smaller than a tile work: labels are padded with class 0 and weight 0, so the padding
adds nothing to the loss.

Memory follows the data: each image, label image and weight map is held once at its own size (in
memory, or in the disk cache of :mod:`keras_unet.cache`), images in their own dtype with their
normalisation statistics (see :mod:`keras_unet.preprocess`); padding is never stored, but cut
per tile, by mirroring the pixels the tile reads. Reading files is :mod:`keras_unet.images`, masks
to labels and weights is :mod:`keras_unet.targets`, the built-in demo data
:mod:`keras_unet.demo`.
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ._compat import tf
from . import augment
from .balance import check_draws
from .config import AUTO_VAL_FRACTION, AUTO_VAL_MIN_IMAGES, Augmentation
from .demo import demo_data
from .geometry import Geometry

__all__ = ["demo_data", "TrainingSet", "NormalisedImages", "cut_window", "reflect",
           "training_dataset", "validation_dataset", "validation_tiles", "split_validation",
           "validation_rule", "crop_to_output"]


# --------------------------------------------------------------------------------------------
# Training tiles


def crop_to_output(array, geometry: Geometry):
    """Centre-crop ``(..., H, W)`` labels or weights cut at the input tile to the output tile.

    Works on NumPy arrays and tensors; the crop is the network margin, known analytically.
    """
    m = geometry.margin
    if m == 0:
        return array
    return array[..., m:-m, m:-m]


@dataclass
class TrainingSet:
    """Images with their per-pixel targets, ready to cut training tiles from.

    Each image, label image and weight map is held once, at its own size: NumPy arrays in memory,
    or arrays of an on-disk cache (:mod:`keras_unet.cache`; anything with ``shape``, ``dtype``
    and NumPy slicing). Tiles are cut from them one at a time (:func:`training_dataset`), so
    memory follows the data, not the number of images times the largest one.

    Attributes:
        images: ``(H_i, W_i, C)`` images. With ``stats`` they are raw, in their own dtype (8/16
            bit, or float32), and each tile is normalised as it is cut:
            ``(x - offset_i) / divisor_i`` in float32, the same arithmetic as
            :meth:`keras_unet.preprocess.Normalizer.apply` on the whole image; without ``stats``
            they are already normalised float32.
        labels: ``(H_i, W_i)`` class ids (uint8 when prepared here: at most 256 classes).
        weights: float32 ``(H_i, W_i)`` weight maps.
        instances: optional ``(H_i, W_i)`` object ids (for instance metrics).
        min_object_size: the smallest object worth keeping in predictions, px (half the 1st
            percentile of the training objects' areas; 0 when unknown).
        border_width: the separating border width the labels were made with, px per object (0
            when no objects were separated: binary and class masks).
        stats: per image, the ``(offset, divisor)`` its raw intensities were normalised with
            (:meth:`keras_unet.preprocess.Normalizer.stats`), so colour augmentation can work on
            raw intensities; None when unknown.
        scale: the raw value of full intensity (255 for 8-bit images).
        normalization: the normalisation mode (``"image"``, ``"fixed"``, ``"percentile"``).
        draws: per image, the probability that a training tile is cut from it (summing to 1);
            None: every image alike (see ``fit --balance``).
    """

    images: Sequence[np.ndarray]
    labels: Sequence[np.ndarray]
    weights: Sequence[np.ndarray]
    instances: Sequence[np.ndarray] | None = None
    min_object_size: int = 0
    border_width: int = 0
    stats: Sequence[tuple[float, float]] | None = None
    scale: float = 1.0
    normalization: str = "image"
    draws: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if not len(self.images):
            raise ValueError("the training set is empty")
        check_draws(self.draws, len(self.images))
        if not (len(self.images) == len(self.labels) == len(self.weights)):
            raise ValueError("images, labels and weights must have the same length")
        if self.stats is not None and len(self.stats) != len(self.images):
            raise ValueError("stats must hold one (offset, divisor) per image")
        channels = {im.shape[2] for im in self.images}
        if len(channels) > 1:
            raise ValueError(f"all images must have the same number of channels, got {channels}")
        for i, (im, lb, wt) in enumerate(zip(self.images, self.labels, self.weights)):
            if tuple(im.shape[:2]) != tuple(lb.shape) or tuple(lb.shape) != tuple(wt.shape):
                raise ValueError(
                    f"item {i}: image {im.shape[:2]}, labels {lb.shape} and weights {wt.shape} "
                    "must have the same height and width"
                )

    @property
    def channels(self) -> int:
        return int(self.images[0].shape[2])

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` normalised, float32 ``(H, W, C)`` (the network's input)."""
        x = np.asarray(self.images[i])
        if self.stats is None:
            return x.astype(np.float32, copy=False)
        offset, divisor = self.stats[i]
        out = x.astype(np.float32)
        out -= np.float32(offset)
        out /= np.float32(divisor)
        return out

    @property
    def normalised(self) -> "NormalisedImages":
        """The images normalised, one at a time as they are asked for (a read-only sequence)."""
        return NormalisedImages(self)

    @property
    def nbytes(self) -> int:
        """Bytes the images, labels, weights (and instances) take as held."""
        parts = [self.images, self.labels, self.weights] + ([self.instances] if self.instances
                                                            else [])
        return int(sum(np.prod(a.shape) * np.dtype(a.dtype).itemsize for p in parts for a in p))


class NormalisedImages(SequenceABC):
    """:meth:`TrainingSet.image` as a sequence (for code that iterates over images)."""

    def __init__(self, data: TrainingSet):
        self.data = data

    def __len__(self) -> int:
        return len(self.data.images)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.data.image(k) for k in range(len(self))[i]]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.data.image(i % len(self))


def reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Source index of each (possibly outside) position along an axis of length ``n`` under
    mirror padding without repeating the edge pixel (:func:`keras_unet.preprocess.mirror_indices`)."""
    if n == 1:
        return np.zeros_like(index)
    j = np.mod(index, 2 * (n - 1))
    return np.where(j < n, j, 2 * (n - 1) - j)


def _extent(start: int, size: int, n: int) -> tuple[int, int, int, int]:
    """Along an axis of length ``n``: the rows ``[a, b)`` to read for positions
    ``[start, start + size)`` under mirror padding, and how far to pad them before and after.

    Padding only ever happens about the axis' true ends: reading starts at 0 when the window
    starts before it, ends at ``n`` when it ends after it, and covers the rows the mirror
    reaches back to (the whole axis when the padding is longer than the axis).
    """
    before, after = max(0, -start), max(0, start + size - n)
    a = 0 if before else start
    b = n if after else start + size
    if after:
        a = min(a, max(0, n - 1 - after))
    if before:
        b = max(b, min(n, before + 1))
    return a, b, before, after


def cut_window(array, top: int, left: int, size: int, mirror: bool) -> np.ndarray:
    """The ``size`` x ``size`` window of ``array`` ``(H, W[, C])`` whose top-left pixel is at
    ``(top, left)``, which may lie outside: mirrored there (``mirror``; without repeating the
    edge pixel, as :func:`keras_unet.preprocess.mirror_pad`), or 0.

    Only the rows and columns the window needs are read (``array`` may be an on-disk array).
    """
    h, w = array.shape[:2]
    if 0 <= top and top + size <= h and 0 <= left and left + size <= w:
        return np.ascontiguousarray(array[top:top + size, left:left + size])
    if mirror and min(h, w) == 1:  # NumPy's reflect cannot mirror a single row: index it
        rows, cols = reflect(np.arange(top, top + size), h), reflect(np.arange(left, left + size), w)
        block = np.asarray(array[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
        return np.take(np.take(block, rows - rows.min(), axis=0), cols - cols.min(), axis=1)
    if mirror:  # slices and NumPy's reflect padding (copies of rows), not a gather per pixel
        r0, r1, rb, ra = _extent(top, size, h)
        c0, c1, cb, ca = _extent(left, size, w)
        block = np.pad(np.asarray(array[r0:r1, c0:c1]),
                       ((rb, ra), (cb, ca)) + ((0, 0),) * (len(array.shape) - 2), mode="reflect")
        y, x = top - (r0 - rb), left - (c0 - cb)
        return np.ascontiguousarray(block[y:y + size, x:x + size])
    out = np.zeros((size, size) + tuple(array.shape[2:]), array.dtype)
    r0, r1 = max(top, 0), min(top + size, h)
    c0, c1 = max(left, 0), min(left + size, w)
    if r0 < r1 and c0 < c1:
        out[r0 - top:r1 - top, c0 - left:c1 - left] = array[r0:r1, c0:c1]
    return out


def _dtype(arrays: Sequence) -> np.dtype:
    """The one dtype of a list of arrays (their common type when they differ)."""
    return np.result_type(*{np.dtype(a.dtype) for a in arrays})


def training_dataset(
    data: TrainingSet,
    geometry: Geometry,
    tile_size: int,
    batch_size: int = 1,
    seed: int = 0,
    augmentation: Augmentation | None = None,
    start: int = 0,
) -> tf.data.Dataset:
    """An endless, deterministic ``tf.data.Dataset`` of random, augmented training tiles.

    Each step picks an image (all alike, or as often as ``data.draws`` says) and an output window
    inside it (stateless RNG from the step number and ``seed``), cuts the input tile around it
    from the mirror-padded image, and, with ``augmentation``, resamples it (rotation, shift, the
    paper's elastic deformation; the image bilinearly, labels and weights by nearest neighbour,
    all reading real context around the tile), flips/rotates it by 90 degrees and changes grey
    values. Labels and weights are then cropped to the output window (the margin is known
    analytically).

    Only the window a tile needs is read from each image (from memory or from the disk cache,
    in parallel, ahead of the training step); nothing is padded or copied beforehand.

    Args:
        data: the images, class labels and weight maps (weights computed once, beforehand).
        geometry: the network's :class:`~keras_unet.model.Geometry`.
        tile_size: input tile size in px (validated; the error names the nearest valid sizes).
        batch_size: tiles per batch.
        seed: the same seed gives the same tiles.
        augmentation: what to apply; ``None`` cuts plain tiles.
        start: index of the first tile (a resumed run starts where it stopped).

    Returns:
        Batches of ``{"image": (B, T, T, C) float32, "labels": (B, O, O) int32,
        "weights": (B, O, O) float32}``, ``O = geometry.output_size(T)``: the input of
        :func:`keras_unet.build_training_model`.
    """
    out = geometry.check(tile_size, "tile size")
    aug = (augmentation or Augmentation.off()).validate()
    augment.check_channels(aug, data.channels)
    m = geometry.margin
    reach = aug.reach(tile_size)
    pad = m + reach
    n = len(data.images)
    c = data.channels
    span = tile_size + 2 * reach  # the tile plus the context resampling may read
    # Output windows start anywhere inside the label extent (at least one output tile).
    max_y = tf.constant([max(im.shape[0], out) - out + 1 for im in data.images], tf.int32)
    max_x = tf.constant([max(im.shape[1], out) - out + 1 for im in data.images], tf.int32)
    stats = data.stats if data.stats is not None else [(0.0, 1.0)] * n
    offsets = tf.constant([float(s[0]) for s in stats], tf.float32)
    divisors = tf.constant([float(s[1]) for s in stats], tf.float32)
    types = [_dtype(data.images), _dtype(data.labels), _dtype(data.weights)]
    check_draws(data.draws, n)
    logits = (None if data.draws is None else
              tf.constant(np.log(np.asarray(data.draws, np.float64))[None], tf.float32))

    def read(idx, top, left):  # NumPy, outside the graph: one window of each array
        i, top, left = int(idx), int(top), int(left)
        return (cut_window(data.images[i], top, left, span, True).astype(types[0], copy=False),
                cut_window(data.labels[i], top, left, span, False).astype(types[1], copy=False),
                cut_window(data.weights[i], top, left, span, False).astype(types[2], copy=False))

    def sample(step):
        s = tf.stack([tf.cast(seed, tf.int64), step])
        if logits is None:
            idx = tf.random.stateless_uniform([], s, 0, n, dtype=tf.int32)
        else:
            idx = tf.cast(tf.random.stateless_categorical(logits, 1, s)[0, 0], tf.int32)
        yx = tf.random.stateless_uniform([2], s + [0, 1 << 40], 0, 1 << 30, dtype=tf.int32)
        y, x = yx[0] % max_y[idx], yx[1] % max_x[idx]
        # The window's top-left corner in image coordinates (the input tile's is ``reach`` px in).
        raw, lab, wt = tf.numpy_function(read, [idx, y - pad, x - pad],
                                         [tf.as_dtype(t) for t in types], stateful=False)
        image = (tf.cast(raw, tf.float32) - offsets[idx]) / divisors[idx]
        image = tf.reshape(image, [span, span, c])
        lab = tf.reshape(tf.cast(lab, tf.int32), [span, span])
        wt = tf.reshape(tf.cast(wt, tf.float32), [span, span])
        if aug.geometric:
            yy, xx = augment.coordinates(aug, s + [0, 2 << 40], tile_size)
            yy, xx = yy + reach, xx + reach
            image = augment.sample(image, yy, xx, 1)
            lab = augment.sample(lab, yy, xx, 0)
            wt = augment.sample(wt, yy, xx, 0)
        image = tf.ensure_shape(image, [tile_size, tile_size, c])
        lab = tf.ensure_shape(lab, [tile_size, tile_size])
        wt = tf.ensure_shape(wt, [tile_size, tile_size])
        image, lab, wt = augment.flip(aug, s + [0, 3 << 40], image, lab, wt)
        image = augment.colour(aug, s + [0, 5 << 40], image, offsets[idx], divisors[idx],
                               data.scale, data.normalization)
        image = augment.grey(aug, s + [0, 4 << 40], image)
        return {
            "image": image,
            "labels": crop_to_output(lab, geometry),
            "weights": crop_to_output(wt, geometry),
        }

    ds = tf.data.Dataset.counter(start).map(sample, num_parallel_calls=tf.data.AUTOTUNE,
                                            deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _validation_windows(data: TrainingSet, geometry: Geometry, tile_size: int
                        ) -> Iterator[dict[str, np.ndarray]]:
    """The tiles of :func:`validation_tiles`, one at a time, image by image."""
    out = geometry.check(tile_size, "tile size")
    m = geometry.margin

    def starts(extent):
        s = list(range(0, extent - out + 1, out))
        return s if s[-1] == extent - out else s + [extent - out]

    for i in range(len(data.images)):
        h, w = data.labels[i].shape
        ext_h, ext_w = max(h, out), max(w, out)
        seen = np.zeros((ext_h, ext_w), bool)
        offset, divisor = data.stats[i] if data.stats is not None else (0.0, 1.0)
        for y in starts(ext_h):
            for x in starts(ext_w):
                image = cut_window(data.images[i], y - m, x - m, tile_size, True)
                image = image.astype(np.float32)
                image -= np.float32(offset)
                image /= np.float32(divisor)
                lab = cut_window(data.labels[i], y, x, out, False).astype(np.int32)
                wt = cut_window(data.weights[i], y, x, out, False).astype(np.float32)
                valid = ~seen[y : y + out, x : x + out]
                valid[h - y :, :] = False  # label padding, not image
                valid[:, w - x :] = False
                wt[~valid] = 0  # counted once: not again where an earlier tile covered it
                seen[y : y + out, x : x + out] = True
                yield {"image": image, "labels": lab, "weights": wt, "valid": valid}


def validation_tiles(
    data: TrainingSet, geometry: Geometry, tile_size: int
) -> dict[str, np.ndarray]:
    """Every output pixel of every image exactly once, as non-augmented tiles.

    Output windows step by the output size over each image (the last one flush with the border,
    overlapping its neighbour; the overlap is counted once, its weight set to 0 in the earlier
    tile). Returns ``{"image": (N, T, T, C), "labels": (N, O, O), "weights": (N, O, O),
    "valid": (N, O, O) bool}``; ``valid`` marks each image pixel in exactly one tile.
    """
    tiles = list(_validation_windows(data, geometry, tile_size))
    return {k: np.stack([t[k] for t in tiles]) for k in ("image", "labels", "weights", "valid")}


def validation_dataset(
    data: TrainingSet, geometry: Geometry, tile_size: int, batch_size: int = 1
) -> tf.data.Dataset:
    """A finite dataset of the :func:`validation_tiles` (never augmented), batched; the tiles are
    cut as the dataset is read, image by image (from memory or the disk cache)."""
    out = geometry.check(tile_size, "tile size")
    c = data.channels
    signature = {"image": tf.TensorSpec([tile_size, tile_size, c], tf.float32),
                 "labels": tf.TensorSpec([out, out], tf.int32),
                 "weights": tf.TensorSpec([out, out], tf.float32)}

    def tiles():
        for tile in _validation_windows(data, geometry, tile_size):
            tile.pop("valid")
            yield tile

    return tf.data.Dataset.from_generator(tiles, output_signature=signature).batch(batch_size)


def split_validation(
    n: int, fraction: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices of training and validation images for a random ``fraction`` held out.

    At least one image goes to each side when ``fraction > 0``; the split depends only on ``n``,
    ``fraction`` and ``seed``.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction!r}")
    if fraction == 0:
        return list(range(n)), []
    if n < 2:
        raise ValueError(
            f"a validation fraction needs at least 2 images, got {n}; pass a validation folder "
            "instead, or no validation"
        )
    n_val = min(max(1, int(round(n * fraction))), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def validation_rule(n_images: int, fraction: float | None) -> tuple[float, str]:
    """The fraction of ``n_images`` to hold out for validation, and why, in words.

    ``fraction`` None is the default rule: ``AUTO_VAL_FRACTION`` (at least one image) when there
    are at least ``AUTO_VAL_MIN_IMAGES`` images, else none (the object settings are then
    calibrated on the training images).
    """
    if fraction is not None:
        return fraction, "--val-fraction" if fraction else ""
    if n_images >= AUTO_VAL_MIN_IMAGES:
        return AUTO_VAL_FRACTION, (f"the default: {AUTO_VAL_FRACTION:.0%}, at least 1, from "
                                   f"{AUTO_VAL_MIN_IMAGES} images on; --val-fraction 0 for none")
    return 0.0, (f"Only {n_images} image(s), so none is held out for validation (that needs at "
                 f"least {AUTO_VAL_MIN_IMAGES}, or --val-images/--val-fraction): the object "
                 "settings will be calibrated on the training images, which flatters them.")
