"""Mirror padding and the overlap-tile strategy (Ronneberger et al. 2015, Fig. 2).

A valid-padding U-Net sees ``margin`` px of context on each side of every output pixel. At image
borders that context is missing, so the paper extrapolates it by mirroring the image. The mirror
here does not repeat the edge pixel (NumPy's ``"reflect"``) and keeps reflecting for pads larger
than the image, so any image size works; :func:`mirror_indices` is the single definition used by
both the NumPy and the TensorFlow version.
"""

from __future__ import annotations

import numpy as np

from ._compat import tf

__all__ = ["mirror_indices", "mirror_pad", "tf_mirror_pad"]


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
