"""The built-in demo data, and the tf.data pipeline of training and validation tiles.

Training tiles follow the paper's overlap-tile strategy: the image is mirror-padded by the network
margin, a random output window is chosen inside the image, and the input tile is that window grown
by the margin; labels and weight maps are cut to the output window directly (never by running the
model). Images smaller than a tile work: labels are padded with class 0 and weight 0, so the padding
adds nothing to the loss.

Images arrive here already normalised (see :mod:`keras_unet.preprocess`); reading files is
:mod:`keras_unet.images`, masks to labels and weights is :mod:`keras_unet.targets`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ._compat import tf
from . import augment
from .config import Augmentation
from .geometry import Geometry
from .preprocess import mirror_pad

__all__ = [
    "demo_data",
    "TrainingSet",
    "training_dataset",
    "validation_dataset",
    "validation_tiles",
    "split_validation",
    "crop_to_output",
]


# --------------------------------------------------------------------------------------------
# Demo data


def demo_data(
    n_images: int = 8,
    size: int | tuple[int, int] = 256,
    seed: int = 0,
    cell_radius: tuple[float, float] = (9.0, 16.0),
    density: float = 0.9,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic microscopy-like images of touching cells, with their instance labels.

    Cells are grown from random seeds as a noisy Voronoi tessellation limited by a per-cell radius,
    so many cells touch their neighbours; a 1 px background line (like the membranes of ISBI 2012)
    separates touching cells in the labels and shows as a faint dark line in the image. Interiors
    have per-cell brightness and texture, the image is blurred and noisy. Deterministic for a seed.

    Args:
        n_images: number of images.
        size: image size in px, ``int`` or ``(height, width)``.
        seed: random seed.
        cell_radius: range of cell radii in px.
        density: fraction of the area seeded with cells (about; 0..1).

    Returns:
        ``images`` float32 ``(n, H, W, 1)`` in [0, 1] and ``labels`` int32 ``(n, H, W)``
        (0 = background, 1..N = cells).
    """
    h, w = (size, size) if isinstance(size, int) else size
    if n_images < 1 or h < 8 or w < 8:
        raise ValueError(f"need n_images >= 1 and size >= 8 px, got {n_images} and {(h, w)}")
    rng = np.random.default_rng(seed)
    images = np.empty((n_images, h, w, 1), np.float32)
    labels = np.empty((n_images, h, w), np.int32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n_images):
        r_mean = float(np.mean(cell_radius))
        n_cells = max(2, int(density * h * w / (np.pi * r_mean**2)))
        cy = rng.uniform(0, h, n_cells).astype(np.float32)
        cx = rng.uniform(0, w, n_cells).astype(np.float32)
        radius = rng.uniform(*cell_radius, n_cells).astype(np.float32)
        # Noisy distance so borders are wavy, not straight Voronoi edges.
        wobble = ndi.gaussian_filter(rng.normal(0, 1, (h, w)), 3).astype(np.float32)
        wobble *= 2.5 / (wobble.std() + 1e-6)
        seeds = np.ones((h, w), np.uint8)
        seeds[np.clip(cy.astype(int), 0, h - 1), np.clip(cx.astype(int), 0, w - 1)] = 0
        _, (iy, ix) = ndi.distance_transform_edt(seeds, return_indices=True)
        owner_map = np.full((h, w), -1, np.int64)
        owner_map[np.clip(cy.astype(int), 0, h - 1), np.clip(cx.astype(int), 0, w - 1)] = np.arange(
            n_cells
        )
        owner = owner_map[iy, ix]
        dist = np.hypot(yy - cy[owner], xx - cx[owner]) + wobble
        lab = np.where(dist < radius[owner], owner + 1, 0).astype(np.int32)
        # 1 px background line where two cells touch (4-neighbourhood).
        border = np.zeros((h, w), bool)
        for axis in (0, 1):
            a = np.moveaxis(lab, axis, 0)
            diff = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
            np.moveaxis(border, axis, 0)[1:] |= diff
        lab[border] = 0
        lab = _relabel(lab)

        brightness = rng.uniform(0.55, 0.9, n_cells + 1).astype(np.float32)
        brightness[0] = 0.25
        texture = ndi.gaussian_filter(rng.normal(0, 1, (h, w)), 1.5).astype(np.float32)
        img = brightness[np.where(lab > 0, owner + 1, 0)] + 0.05 * texture
        img[border] = 0.4  # faint membrane between touching cells
        img = ndi.gaussian_filter(img, 1.0) + rng.normal(0, 0.03, (h, w)).astype(np.float32)
        images[i, ..., 0] = np.clip(img, 0, 1)
        labels[i] = lab
    return images, labels


def _relabel(lab: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..N, in order of first appearance in raster order."""
    ids, first = np.unique(lab, return_index=True)
    order = ids[np.argsort(first)]
    lut = np.zeros(int(lab.max()) + 1, np.int32)
    fg = order[order > 0]
    lut[fg] = np.arange(1, len(fg) + 1)
    return lut[lab]


# --------------------------------------------------------------------------------------------
# Reading and normalising


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

    Attributes:
        images: list of float32 ``(H_i, W_i, C)`` normalised images.
        labels: list of int32 ``(H_i, W_i)`` class ids.
        weights: list of float32 ``(H_i, W_i)`` weight maps.
        instances: optional list of int ``(H_i, W_i)`` object ids (for instance metrics).
        min_object_size: the smallest object worth keeping in predictions, px (half the 1st
            percentile of the training objects' areas; 0 when unknown).
        border_width: the separating border width the labels were made with, px per object (0
            when no objects were separated: binary and class masks).
        stats: per image, the ``(offset, divisor)`` its raw intensities were normalised with
            (:meth:`keras_unet.preprocess.Normalizer.stats`), so colour augmentation can work on
            raw intensities; None when unknown.
        scale: the raw value of full intensity (255 for 8-bit images).
        normalization: the normalisation mode (``"image"``, ``"fixed"``, ``"percentile"``).
    """

    images: list[np.ndarray]
    labels: list[np.ndarray]
    weights: list[np.ndarray]
    instances: list[np.ndarray] | None = None
    min_object_size: int = 0
    border_width: int = 0
    stats: list[tuple[float, float]] | None = None
    scale: float = 1.0
    normalization: str = "image"

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError("the training set is empty")
        if not (len(self.images) == len(self.labels) == len(self.weights)):
            raise ValueError("images, labels and weights must have the same length")
        channels = {im.shape[2] for im in self.images}
        if len(channels) > 1:
            raise ValueError(f"all images must have the same number of channels, got {channels}")
        for i, (im, lb, wt) in enumerate(zip(self.images, self.labels, self.weights)):
            if im.shape[:2] != lb.shape or lb.shape != wt.shape:
                raise ValueError(
                    f"item {i}: image {im.shape[:2]}, labels {lb.shape} and weights {wt.shape} "
                    "must have the same height and width"
                )

    @property
    def channels(self) -> int:
        return int(self.images[0].shape[2])


def _stack(data: TrainingSet, out: int, pad: int):
    """All images in one array, mirror-padded by ``pad`` px and out to a common extent.

    Each image's label extent is at least one output tile; labels and weights pad with class 0 and
    weight 0, so padding adds nothing to the loss. Returns the arrays and the label extents.
    """
    n = len(data.images)
    ext_h = [max(im.shape[0], out) for im in data.images]
    ext_w = [max(im.shape[1], out) for im in data.images]
    H, W = max(ext_h) + 2 * pad, max(ext_w) + 2 * pad
    images = np.zeros((n, H, W, data.channels), np.float32)
    labels = np.zeros((n, H, W), np.int32)
    weights = np.zeros((n, H, W), np.float32)
    for i, (im, lb, wt) in enumerate(zip(data.images, data.labels, data.weights)):
        h, w = im.shape[:2]
        images[i] = mirror_pad(im, (pad, H - h - pad, pad, W - w - pad))
        labels[i, pad : pad + h, pad : pad + w] = lb
        weights[i, pad : pad + h, pad : pad + w] = wt
    return images, labels, weights, ext_h, ext_w


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

    Each step picks an image and an output window inside it (stateless RNG from the step number
    and ``seed``), cuts the input tile around it from the mirror-padded image, and, with
    ``augmentation``, resamples it (rotation, shift, the paper's elastic deformation; the image
    bilinearly, labels and weights by nearest neighbour, all reading real context around the
    tile), flips/rotates it by 90 degrees and changes grey values. Labels and weights are then
    cropped to the output window (the margin is known analytically).

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
    images, labels, weights, ext_h, ext_w = _stack(data, out, pad)
    # Output windows start anywhere inside the label extent.
    max_y = tf.constant(np.array(ext_h) - out + 1, tf.int32)
    max_x = tf.constant(np.array(ext_w) - out + 1, tf.int32)
    images_t, labels_t, weights_t = (tf.constant(a) for a in (images, labels, weights))
    # how each image was normalised, so colour augmentation can undo it
    stats = np.array(data.stats if data.stats else [(0.0, 1.0)] * n, np.float32).reshape(n, 2)
    stats_t = tf.constant(stats)
    span = tile_size + 2 * reach  # the tile plus the context resampling may read

    def sample(step):
        s = tf.stack([tf.cast(seed, tf.int64), step])
        idx = tf.random.stateless_uniform([], s, 0, n, dtype=tf.int32)
        yx = tf.random.stateless_uniform([2], s + [0, 1 << 40], 0, 1 << 30, dtype=tf.int32)
        y, x = yx[0] % max_y[idx], yx[1] % max_x[idx]
        # The input tile's top-left corner in the padded stack is (y + reach, x + reach).
        image = images_t[idx, y : y + span, x : x + span]
        lab = labels_t[idx, y : y + span, x : x + span]
        wt = weights_t[idx, y : y + span, x : x + span]
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
        image = augment.colour(aug, s + [0, 5 << 40], image, stats_t[idx, 0], stats_t[idx, 1],
                               data.scale, data.normalization)
        image = augment.grey(aug, s + [0, 4 << 40], image)
        return {
            "image": image,
            "labels": crop_to_output(lab, geometry),
            "weights": crop_to_output(wt, geometry),
        }

    ds = tf.data.Dataset.counter(start).map(sample, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def validation_tiles(
    data: TrainingSet, geometry: Geometry, tile_size: int
) -> dict[str, np.ndarray]:
    """Every output pixel of every image exactly once, as non-augmented tiles.

    Output windows step by the output size over each image (the last one flush with the border,
    overlapping its neighbour; the overlap is counted once, its weight set to 0 in the earlier
    tile). Returns ``{"image": (N, T, T, C), "labels": (N, O, O), "weights": (N, O, O),
    "valid": (N, O, O) bool}``; ``valid`` marks each image pixel in exactly one tile.
    """
    out = geometry.check(tile_size, "tile size")
    m = geometry.margin
    images, labels, weights, ext_h, ext_w = _stack(data, out, m)
    tiles = {"image": [], "labels": [], "weights": [], "valid": []}

    def starts(extent):
        s = list(range(0, extent - out + 1, out))
        return s if s[-1] == extent - out else s + [extent - out]

    for i in range(len(data.images)):
        seen = np.zeros((ext_h[i], ext_w[i]), bool)
        for y in starts(ext_h[i]):
            for x in starts(ext_w[i]):
                tiles["image"].append(images[i, y : y + tile_size, x : x + tile_size])
                wt = weights[i, y + m : y + m + out, x + m : x + m + out].copy()
                valid = ~seen[y : y + out, x : x + out]
                valid[data.labels[i].shape[0] - y :, :] = False  # label padding, not image
                valid[:, data.labels[i].shape[1] - x :] = False
                wt[~valid] = 0  # counted once: not again where an earlier tile covered it
                seen[y : y + out, x : x + out] = True
                tiles["valid"].append(valid)
                tiles["labels"].append(labels[i, y + m : y + m + out, x + m : x + m + out])
                tiles["weights"].append(wt)
    return {k: np.stack(v) for k, v in tiles.items()}


def validation_dataset(
    data: TrainingSet, geometry: Geometry, tile_size: int, batch_size: int = 1
) -> tf.data.Dataset:
    """A finite dataset of :func:`validation_tiles` (never augmented), batched."""
    tiles = validation_tiles(data, geometry, tile_size)
    tiles.pop("valid")
    return tf.data.Dataset.from_tensor_slices(tiles).batch(batch_size)


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
