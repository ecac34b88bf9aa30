"""Augmentation in TensorFlow ops: the paper's elastic deformation, flips, rotations, grey values.

The paper trains from 30 images thanks to heavy augmentation, above all *elastic deformation*:
random displacement vectors on a coarse 3x3 grid, drawn from a Gaussian with 10 px standard
deviation, made dense per pixel by bicubic interpolation (Ronneberger et al. 2015, sec. 3.1).

Everything here is TensorFlow ops only (no ``tf.py_function``, no NumPy at run time, no
tensorflow-addons), so it runs inside ``tf.data`` and, placed on a GPU, on the GPU. Randomness is
stateless: the same seed gives the same result.

Conventions:

* a **displacement field** is float32 ``(H, W, 2)`` in px, ``[..., 0]`` along y (rows) and
  ``[..., 1]`` along x (columns);
* warping is *backward*: ``out[y, x] = source[y + dy(y, x), x + dx(y, x)]``, as
  ``scipy.ndimage.map_coordinates(source, [y + dy, x + dx])`` computes it;
* coordinates beyond the source are clamped to its edge pixels.

The pieces are public so they can be tested and reused: :func:`random_grid` draws the coarse
displacements, :func:`dense_field` makes them dense, :func:`warp` resamples with a given field
(bilinear for images, nearest for labels and weight maps, so labels keep valid ids and weights
stay aligned with them). The settings (:class:`keras_unet.config.Augmentation`) are applied to training tiles by
:func:`coordinates`, :func:`flip`, :func:`colour` and :func:`grey`.

**Colour** (:func:`colour`) works on tiles of normalised images. Stain augmentation needs the raw
colours, so the image's normalisation is undone first (its ``(offset, divisor)``), the stains
are changed in haematoxylin-eosin-DAB optical density space (:func:`rgb_to_hed`, the colour
deconvolution of Ruifrok & Johnston 2001 with ``skimage.color.hed_from_rgb``; the random scale
and shift per stain of Tellez et al. 2018, the shift in optical density units), and the result
is normalised again. For per-image normalisation the image's statistics would change too; they
are moved as the tile's own mean and standard deviation moved (:func:`restandardize`).
Inversion and channel shuffling work in normalised units: inverting the raw intensities and
normalising again gives exactly ``-x`` (``"image"``) or ``1 - x`` (``"fixed"``; for
``"percentile"``, ``1 - x`` is what the swapped 1st and 99.8th percentiles would give), and the
statistics are pooled over the channels, so their order does not change them.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.color import hed_from_rgb, rgb_from_hed

from ._compat import tf
from .config import Augmentation

__all__ = [
    "random_grid",
    "dense_field",
    "cubic_weights",
    "warp",
    "sample",
    "elastic_deform",
    "Augmentation",
    "coordinates",
    "flip",
    "grey",
    "colour",
    "rgb_to_hed",
    "hed_to_rgb",
    "hed_jitter",
    "restandardize",
    "check_channels",
]


def _seed(seed) -> tf.Tensor:
    """A stateless-RNG seed: shape ``[2]`` int64 from an int or a pair."""
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        raise TypeError(f"seed must be an int or a pair of ints, got dtype {seed.dtype}")
    seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.constant(0, tf.int64)])
    return seed


def random_grid(seed, grid_shape: tuple[int, int] = (3, 3), sigma: float = 10.0) -> tf.Tensor:
    """Coarse random displacements: float32 ``(gh, gw, 2)`` px, each from N(0, sigma^2).

    Args:
        seed: int or pair of ints (stateless RNG: the same seed gives the same grid).
        grid_shape: control points along y and x (paper: 3 x 3); each at least 2.
        sigma: standard deviation of each displacement component in px (paper: 10).
    """
    gh, gw = (int(v) for v in grid_shape)
    if gh < 2 or gw < 2:
        raise ValueError(f"grid_shape needs at least 2 x 2 control points, got {grid_shape}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0 px, got {sigma!r}")
    return tf.random.stateless_normal([gh, gw, 2], _seed(seed), stddev=float(sigma), dtype=tf.float32)


def _keys(t: tf.Tensor, a: float = -0.5) -> tf.Tensor:
    """Keys' cubic convolution kernel (a = -0.5: the classic bicubic interpolation)."""
    t = tf.abs(t)
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
    return tf.where(t <= 1.0, near, tf.where(t < 2.0, far, tf.zeros_like(t)))


def cubic_weights(n_points: int, size) -> tf.Tensor:
    """Bicubic interpolation matrix float32 ``(size, n_points)``, one row per output pixel.

    Control point ``i`` lies at pixel ``i * (size - 1) / (n_points - 1)``, so the first and the
    last point sit on the first and the last pixel; beyond them the grid repeats its edge values.
    Row ``y`` holds the weights that interpolate the points at pixel ``y``; rows sum to 1.
    """
    size = tf.convert_to_tensor(size, tf.int32)
    pos = tf.cast(tf.range(size), tf.float32)
    t = pos * (n_points - 1) / tf.cast(tf.maximum(size - 1, 1), tf.float32)
    base = tf.floor(t)
    frac = t - base
    base = tf.cast(base, tf.int32)
    matrix = tf.zeros([size, n_points], tf.float32)
    for k in (-1, 0, 1, 2):
        idx = tf.clip_by_value(base + k, 0, n_points - 1)
        matrix += tf.one_hot(idx, n_points) * _keys(frac - k)[:, None]
    return matrix


def dense_field(grid: tf.Tensor, height, width) -> tf.Tensor:
    """Bicubic upsampling of coarse displacements ``(gh, gw, 2)`` to a dense ``(H, W, 2)`` field (px)."""
    grid = tf.convert_to_tensor(grid, tf.float32)
    if grid.shape.rank != 3 or grid.shape[-1] != 2:
        raise ValueError(f"grid must be (gh, gw, 2) displacements, got shape {grid.shape}")
    wy = cubic_weights(grid.shape[0], height)
    wx = cubic_weights(grid.shape[1], width)
    return tf.einsum("yi,ijc,xj->yxc", wy, grid, wx)


def sample(source: tf.Tensor, y: tf.Tensor, x: tf.Tensor, order: int = 1) -> tf.Tensor:
    """Values of ``source`` ``(H, W[, C])`` at float coordinates ``y``, ``x`` (any equal shapes).

    ``order`` 1: bilinear; 0: nearest (``floor(c + 0.5)``, as scipy's order 0). Coordinates are
    clamped to the source, so points outside take the nearest edge value. Returns ``y.shape`` (+ C).
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (bilinear), got {order!r}")
    source = tf.convert_to_tensor(source)
    squeeze = source.shape.rank == 2
    if squeeze:
        source = source[..., None]
    shape = tf.shape(source)
    h, w = shape[0], shape[1]
    flat = tf.reshape(source, [h * w, shape[2]])
    hf, wf = tf.cast(h - 1, tf.float32), tf.cast(w - 1, tf.float32)
    y = tf.clip_by_value(tf.cast(y, tf.float32), 0.0, hf)
    x = tf.clip_by_value(tf.cast(x, tf.float32), 0.0, wf)
    if order == 0:
        yi = tf.cast(tf.floor(y + 0.5), tf.int32)
        xi = tf.cast(tf.floor(x + 0.5), tf.int32)
        out = tf.gather(flat, yi * w + xi)
    else:
        # The top-left neighbour, kept one pixel inside so its bottom-right neighbour exists.
        y0 = tf.minimum(tf.floor(y), tf.maximum(hf - 1.0, 0.0))
        x0 = tf.minimum(tf.floor(x), tf.maximum(wf - 1.0, 0.0))
        fy, fx = (y - y0)[..., None], (x - x0)[..., None]
        y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
        y1, x1 = tf.minimum(y0 + 1, h - 1), tf.minimum(x0 + 1, w - 1)
        values = tf.cast(flat, tf.float32)
        top = tf.gather(values, y0 * w + x0) * (1 - fx) + tf.gather(values, y0 * w + x1) * fx
        bottom = tf.gather(values, y1 * w + x0) * (1 - fx) + tf.gather(values, y1 * w + x1) * fx
        out = tf.cast(top * (1 - fy) + bottom * fy, source.dtype)
    return out[..., 0] if squeeze else out


def warp(source: tf.Tensor, field: tf.Tensor, order: int = 1) -> tf.Tensor:
    """Resample ``source`` ``(H, W[, C])`` with a displacement ``field`` ``(H, W, 2)`` in px.

    ``out[y, x] = source[y + field[y, x, 0], x + field[y, x, 1]]``; ``order`` 1 for images
    (bilinear), 0 for labels and weight maps (nearest: labels keep only their own ids).
    """
    field = tf.convert_to_tensor(field, tf.float32)
    shape = tf.shape(field)
    yy, xx = tf.meshgrid(
        tf.range(shape[0], dtype=tf.float32), tf.range(shape[1], dtype=tf.float32), indexing="ij"
    )
    return sample(source, yy + field[..., 0], xx + field[..., 1], order)


def elastic_deform(image, labels, weights, seed, grid_shape=(3, 3), sigma: float = 10.0):
    """The paper's elastic deformation of one tile: ``image`` ``(H, W, C)`` bilinear, ``labels``
    and ``weights`` ``(H, W)`` nearest, all with the same random field. Returns the three."""
    shape = tf.shape(image)
    field = dense_field(random_grid(seed, grid_shape, sigma), shape[0], shape[1])
    return warp(image, field, 1), warp(labels, field, 0), warp(weights, field, 0)


# Pieces of keras_unet.data.training_dataset; ``aug`` is the run's Augmentation settings.


def coordinates(aug: Augmentation, seed, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Where each pixel of a ``size`` x ``size`` tile samples from, relative to the tile's
    top-left corner: float32 ``y``, ``x`` of shape ``(size, size)``.

    Rotation about the tile centre, a zoom about it (a factor ``z`` from ``1/(1+zoom)`` to
    ``1+zoom``, log-uniform: ``z > 1`` reads a larger region, so objects shrink) and a shift,
    then the elastic field on top.
    """
    seed = _seed(seed)
    r = tf.range(size, dtype=tf.float32)
    yy, xx = tf.meshgrid(r, r, indexing="ij")
    if aug.rotation > 0 or aug.shift > 0 or aug.zoom > 0:
        u = tf.random.stateless_uniform([3], seed + [0, 11], -1.0, 1.0)
        angle = u[0] * (aug.rotation * math.pi / 180.0)
        c = (size - 1) / 2.0
        cos, sin = tf.cos(angle), tf.sin(angle)
        dy, dx = yy - c, xx - c
        if aug.zoom > 0:  # its own draw, so runs without zoom keep their tiles
            v = tf.random.stateless_uniform([], seed + [0, 15], -1.0, 1.0)
            factor = tf.exp(v * math.log1p(aug.zoom))
            dy, dx = dy * factor, dx * factor
        yy = c + cos * dy - sin * dx + u[1] * aug.shift
        xx = c + sin * dy + cos * dx + u[2] * aug.shift
    if aug.elastic and aug.elastic_sigma > 0:
        grid = random_grid(seed + [0, 12], (aug.elastic_grid, aug.elastic_grid), aug.elastic_sigma)
        field = dense_field(grid, size, size)
        yy, xx = yy + field[..., 0], xx + field[..., 1]
    return yy, xx

def flip(aug: Augmentation, seed, image, labels, weights):
    """One of the 8 symmetries of the square, the same for the three (``(T, T[, C])``)."""
    if not aug.flips:
        return image, labels, weights
    k = tf.random.stateless_uniform([], _seed(seed) + [0, 13], 0, 8, dtype=tf.int32)

    def apply(t):
        t = tf.cond(k >= 4, lambda: tf.reverse(t, [1]), lambda: t)
        return tf.image.rot90(t, k % 4) if t.shape.rank == 3 else \
            tf.image.rot90(t[..., None], k % 4)[..., 0]

    return apply(image), apply(labels), apply(weights)

def grey(aug: Augmentation, seed, image):
    """Random contrast and brightness of a normalised image."""
    if aug.brightness <= 0 and aug.contrast <= 0:
        return image
    u = tf.random.stateless_uniform([2], _seed(seed) + [0, 14], -1.0, 1.0)
    mean = tf.reduce_mean(image)
    return (image - mean) * (1.0 + u[0] * aug.contrast) + mean + u[1] * aug.brightness


# --------------------------------------------------------------------------------------------
# Colour: stains, polarity, channels


#: skimage.color.rgb2hed works on log(max(rgb, 1e-6)) / log(1e-6): optical density scaled to [0, 1]
_LOG_ADJUST = float(np.log(1e-6))
#: optical density (natural log) in one unit of skimage's rgb2hed: ln(10^6). Tellez et al. shift
#: the densities by U(-s, s) in optical density (their code's -log(rgb)), so the shift is divided
#: by this; in skimage's units it would be 13.8 times stronger (0.2 would shift by 2.8 OD)
OD_PER_SKIMAGE_UNIT = -_LOG_ADJUST
#: :func:`restandardize` leaves a tile as it was when a change cut its contrast by more than this
MAX_GAIN = 4.0
# NumPy, not tf.constant: a tensor made at import would start TensorFlow's runtime before a
# multi-worker strategy can configure it
_HED_FROM_RGB = np.asarray(hed_from_rgb, np.float32)
_RGB_FROM_HED = np.asarray(rgb_from_hed, np.float32)


def rgb_to_hed(rgb) -> tf.Tensor:
    """Haematoxylin, eosin and DAB densities of RGB colours in [0, 1]: ``(..., 3)`` float32.

    ``skimage.color.rgb2hed`` (Ruifrok & Johnston 2001) without its final clipping at 0, so that
    :func:`hed_to_rgb` inverts it exactly.
    """
    rgb = tf.maximum(tf.cast(rgb, tf.float32), 1e-6)
    return tf.tensordot(tf.math.log(rgb) / _LOG_ADJUST, _HED_FROM_RGB, 1)


def hed_to_rgb(hed) -> tf.Tensor:
    """RGB colours in [0, 1] of stain densities ``(..., 3)``: ``skimage.color.hed2rgb``."""
    return tf.clip_by_value(tf.exp(tf.tensordot(tf.cast(hed, tf.float32) * _LOG_ADJUST,
                                                _RGB_FROM_HED, 1)), 0.0, 1.0)


def hed_jitter(rgb, scale, shift) -> tf.Tensor:
    """RGB ``(..., 3)`` in [0, 1] with each stain density ``d`` made ``d * scale + shift``
    (``scale``, ``shift``: 3 values, haematoxylin, eosin, DAB; Tellez et al. 2018)."""
    return hed_to_rgb(rgb_to_hed(rgb) * scale + shift)


def restandardize(before, after) -> tf.Tensor:
    """``after`` (a tile changed in normalised units) renormalised as its whole image would be.

    The image's mean and standard deviation are taken to move as the tile's did: the result is
    ``(after - mean(after) + mean(before)) * std(before) / std(after)``. A change that took
    away nearly all of the tile's contrast (``std(after)`` below ``std(before) / MAX_GAIN``) is
    not applied: the tile stays ``before``. Renormalising such a tile blew its last differences
    up (values of 143,000 in DSB 2018 tiles under a strong stain change, and a training loss in
    the hundreds).
    """
    m0, v0 = tf.nn.moments(before, axes=[0, 1, 2])
    m1, v1 = tf.nn.moments(after, axes=[0, 1, 2])
    s0, s1 = tf.sqrt(v0), tf.sqrt(v1)
    renormalised = (after - m1 + m0) * s0 / tf.maximum(s1, 1e-6)
    return tf.where(s1 * MAX_GAIN < s0, before, renormalised)


def check_channels(aug: Augmentation, channels: int) -> None:
    """Raise a ValueError naming the option when the images' channels cannot take it."""
    if aug.hed_jitter > 0 and channels != 3:
        raise ValueError(f"--hed-jitter needs RGB images (3 channels); these have {channels}")
    for name, on in (("--channel-shuffle", aug.channel_shuffle), ("--greyscale",
                                                                   aug.greyscale > 0)):
        if on and channels < 2:
            raise ValueError(f"{name} needs colour images; these have 1 channel")


def colour(aug: Augmentation, seed, image, offset=0.0, divisor=1.0, scale: float = 1.0,
           mode: str = "fixed"):
    """Stain, polarity and channel changes of one normalised tile ``(T, T, C)``.

    Args:
        offset, divisor: how the tile's image was normalised (raw = x * divisor + offset).
        scale: the raw value of full intensity (255 for 8-bit images).
        mode: the normalisation mode (``"image"``, ``"fixed"``, ``"percentile"``).

    In order: the stains (``aug.hed_jitter``, RGB only), grey (``aug.greyscale``, the mean of
    the channels), the channel order (``aug.channel_shuffle``) and inversion (``aug.invert``).
    """
    if not aug.colour:
        return image
    seed = _seed(seed)
    per_image = mode != "fixed"
    u = tf.random.stateless_uniform([2], seed + [0, 16], 0.0, 1.0)
    x = image
    if aug.hed_jitter > 0:
        s = aug.hed_jitter
        draw = tf.random.stateless_uniform([2, 3], seed + [0, 17], -s, s)
        rgb = (x * divisor + offset) / scale
        y = (hed_jitter(rgb, 1.0 + draw[0], draw[1] / OD_PER_SKIMAGE_UNIT) * scale
             - offset) / divisor
        x = restandardize(x, y) if per_image else y
    if aug.greyscale > 0:
        y = tf.broadcast_to(tf.reduce_mean(x, -1, keepdims=True), tf.shape(x))
        y = restandardize(x, y) if per_image else y
        x = tf.where(u[0] < aug.greyscale, y, x)
    if aug.channel_shuffle:
        order = tf.argsort(tf.random.stateless_uniform([tf.shape(x)[-1]], seed + [0, 18]))
        x = tf.gather(x, order, axis=-1)
    if aug.invert > 0:
        flipped = -x if mode == "image" else 1.0 - x
        x = tf.where(u[1] < aug.invert, flipped, x)
    return x
