"""How a raw image becomes the network's input: the preprocessing contract, and mirror padding.

**The contract travels inside the model.** :func:`keras_unet.build_unet` puts a
:class:`Preprocessing` layer right after the input. In the graph it is the identity (the network
itself takes normalised images), but its configuration *is* the contract: the normalisation
``mode``, the raw ``scale`` and the number of channels. It is saved in every ``.keras`` file
(``model.keras``, ``checkpoints/best.keras``, a copy moved anywhere) and read back with
:func:`normalizer_of`, so a model loaded with ``keras.models.load_model`` knows how to prepare its
images without any file beside it. The SavedModel export applies the same :class:`Normalizer` in
its graph, and the bioimage.io export declares it in its ``rdf.yaml``.

Why a layer and not a file beside the model: a file is lost when the model is copied alone, and
CSBDeep-style ``config.json`` look-ups were done differently by different callers. Why not normalise
inside the graph: per-image standardisation needs statistics of the *whole* image, while the
network sees tiles; the statistics must be taken before tiling.

**One normalisation** (:class:`Normalizer`) serves training, prediction and export:

* ``"image"`` (default): ``(x - mean) / max(std, 1e-6 * max(|x|, 1))`` with the mean and standard
  deviation over all pixels and channels of the image; independent of the intensity range;
* ``"fixed"``: ``x / scale``, where ``scale`` is the dtype maximum of the *training* images (255
  for 8-bit, 65535 for 16-bit, 1 for float images already in [0, 1]);
* ``"percentile"``: ``(x - p1) / (p99.8 - p1)`` with the image's 1st and 99.8th percentiles
  (CSBDeep's normalisation): robust to a few very bright pixels and to how much of the image the
  objects fill.

``x`` is the raw intensity as float32. :meth:`Normalizer.stats` and :meth:`Normalizer.apply` take
NumPy arrays or TensorFlow tensors alike, so the graph and NumPy paths are the same code.

**What the model was trained on.** The contract also records the dtype and value range of the
training images (``dtype``, ``low``, ``high``; None for models saved before: no check).
:meth:`Normalizer.check` applies the rules every command shares, before any pixel reaches the
network:

* NaN or infinite pixels are refused in every mode (the network would answer "background");
* under ``"fixed"`` (where the raw values matter): an integer image of another bit depth than the
  training images (16-bit data for a model trained on 8-bit images, say), values above ``scale``,
  and a float image within 0..1 for a model trained on larger values are refused, since the
  answer would be meaningless; values far above the brightest training pixel (more than twice)
  give an :class:`~keras_unet.images.InputWarning`;
* ``"image"`` and ``"percentile"`` take each image's own statistics, so the intensity range does
  not matter to them.

The SavedModel applies the same refusals in its graph (:mod:`keras_unet.signatures`).

**Mirror padding** (the paper's Fig. 2) extrapolates missing context at image borders by mirroring
without repeating the edge pixel (NumPy's ``"reflect"``), and keeps reflecting for pads larger than
the image. :func:`mirror_indices` is the single definition behind the NumPy and TF versions.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ._compat import keras, tf
from .images import InputWarning
from .layers import Preprocessing

__all__ = [
    "NORMALIZATIONS",
    "image_kind",
    "Normalizer",
    "Preprocessing",
    "normalizer_of",
    "normalize",
    "instance_settings_of",
    "set_instance_settings",
    "dtype_scale",
    "mirror_indices",
    "mirror_pad",
    "tf_mirror_pad",
]

NORMALIZATIONS = ("image", "fixed", "percentile")
PERCENTILES = (1.0, 99.8)  # "percentile" mode: these map to 0 and 1 (CSBDeep's defaults)
#: the object settings a model stores (:func:`instance_settings_of`)
INSTANCE_KEYS = ("border_width", "threshold", "min_size", "split_depth")
#: the smallest divisor, relative to the image's own largest magnitude (at least 1): a flat image
#: is divided by it, not by 0. Relative to the image, not to the training images' scale, so that
#: an image scaled to 0..1 is normalised like the same image in 16 bits
EPS = 1e-6


def dtype_scale(image) -> float:
    """The value that maps an image's dtype to [0, 1]: 255 for 8-bit, 65535 for 16-bit, 1 for float."""
    dtype = np.asarray(image).dtype if not tf.is_tensor(image) else image.dtype.as_numpy_dtype
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


@dataclass(frozen=True)
class Normalizer:
    """The preprocessing contract: how raw intensities become the network's input.

    Attributes:
        mode: ``"image"`` (per-image zero mean, unit variance) or ``"fixed"`` (divide by scale).
        scale: raw value that maps to 1 in ``"fixed"`` mode (the training images' dtype maximum).
        channels: channels the network takes (grey images stored as RGB are reduced to 1).
        dtype, low, high: the training images' dtype name and smallest and largest value (None:
            not recorded, no check); not part of equality.
    """

    mode: str = "image"
    scale: float = 255.0
    channels: int = 1
    dtype: str | None = field(default=None, compare=False)
    low: float | None = field(default=None, compare=False)
    high: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.mode!r}")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale)
                and self.scale > 0):
            raise ValueError(f"normalization scale must be a finite number > 0, got {self.scale!r}")
        if not isinstance(self.channels, int) or self.channels < 1:
            raise ValueError(f"channels must be a positive integer, got {self.channels!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Normalizer":
        def number(key):
            return None if values.get(key) is None else float(values[key])

        return cls(str(values.get("mode", "image")), float(values.get("scale", 255.0)),
                   int(values.get("channels", 1)), values.get("dtype"), number("low"),
                   number("high"))

    def check(self, image, name: str = "image") -> list[str]:
        """Refuse pixel values the answer would be meaningless for (a ValueError naming
        ``name``); return warnings for values the model may not mean (see the module docs)."""
        x = np.asarray(image)
        if x.dtype.kind == "f":
            bad = int(np.count_nonzero(~np.isfinite(x)))
            if bad:
                raise ValueError(
                    f"{name}: the image holds NaN or infinite values ({bad} pixel"
                    f"{'s' * (bad != 1)}); replace them (e.g. with numpy.nan_to_num) or crop them "
                    "away: the network would call them background")
        if self.mode != "fixed" or self.high is None or x.size == 0:
            return []
        top = float(x.max())
        trained = np.dtype(self.dtype) if self.dtype else None
        why = (f"this model was trained with --normalization fixed (raw values divided by "
               f"{self.scale:g}) on {self.dtype or 'images'} of values {self.low:g}..{self.high:g}")
        if trained is not None and trained.kind in "ui" and x.dtype.kind in "ui" and \
                np.iinfo(x.dtype).max != np.iinfo(trained).max:
            bits = 8 * x.dtype.itemsize
            raise ValueError(
                f"{name}: a {bits}-bit image ({x.dtype}), but {why}, so the answer would be "
                f"meaningless; convert the image to {trained} (16 to 8 bits: divide by 257) or use "
                "a model trained with per-image normalisation")
        if top > self.scale:
            raise ValueError(f"{name}: values up to {top:g}, but {why}, so the answer would be "
                             f"meaningless; scale the image to 0..{self.scale:g}")
        if x.dtype.kind == "f" and top <= 1 and self.high > 1:
            raise ValueError(
                f"{name}: a float image of values within 0..1, but {why}, so the answer would be "
                f"meaningless; multiply it by {self.scale:g} (it was probably scaled to 0..1)")
        if top > 2 * self.high + 1:
            return [f"{name}: values up to {top:g}, more than twice the brightest training pixel "
                    f"({self.high:g}) under --normalization fixed; check the answer"]
        return []

    def stats(self, image) -> tuple[Any, Any]:
        """``(offset, divisor)`` of the image: ``apply`` computes ``(x - offset) / divisor``.

        ``image``: ``(H, W, C)`` NumPy array, or a ``(B, H, W, C)`` tensor (one pair per image).
        """
        if self.mode == "fixed":
            return 0.0, self.scale
        if self.mode == "percentile":
            low, high = (_tf_percentiles(image, PERCENTILES) if tf.is_tensor(image) else
                         np.percentile(np.asarray(image, np.float32), PERCENTILES))
            floor = _floor(image)
            divisor = tf.maximum(high - low, floor) if tf.is_tensor(image) else max(
                float(high - low), floor)
            return low, divisor
        if tf.is_tensor(image):
            x = tf.cast(image, tf.float32)
            mean, var = tf.nn.moments(x, axes=list(range(1, x.shape.rank)), keepdims=True)
            return mean, tf.maximum(tf.sqrt(var), _floor(x))
        x = np.asarray(image, np.float32)
        return float(x.mean(dtype=np.float64)), max(float(x.std(dtype=np.float64)), _floor(x))

    def apply(self, image, stats: tuple[Any, Any] | None = None):
        """The network input for a raw image: float32, same shape (``(H, W)`` gains a channel).

        Args:
            image: raw ``(H, W)`` / ``(H, W, C)`` NumPy array of any dtype, or a ``(B, H, W, C)``
                tensor.
            stats: ``(offset, divisor)`` from :meth:`stats`, e.g. computed on a larger image of
                which ``image`` is a block; default: the image's own.
        """
        if tf.is_tensor(image):
            offset, divisor = stats if stats is not None else self.stats(image)
            return (tf.cast(image, tf.float32) - offset) / divisor
        x = np.asarray(image)
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3:
            raise ValueError(f"image must be (height, width[, channels]), got shape {x.shape}")
        offset, divisor = stats if stats is not None else self.stats(x)
        out = x.astype(np.float32)
        out -= np.float32(offset)
        out /= np.float32(divisor)
        return out

    def channels_of(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """``image`` as ``(H, W, channels)``: grey stored as RGB becomes 1 channel, and a grey
        image for an RGB model becomes RGB (3 equal channels, as grey stored as RGB is); a
        channel count the network cannot take raises a ValueError naming ``name``."""
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"{name}: expected a 2-D image, got shape {image.shape}")
        if image.shape[2] != self.channels:
            if self.channels == 1 and image.shape[2] == 3 and np.all(image == image[..., :1]):
                return image[..., :1]
            if self.channels == 3 and image.shape[2] == 1:
                return np.repeat(image, 3, axis=2)
            raise ValueError(
                f"{name}: the model takes {self.channels}-channel images, this one has "
                f"{image.shape[2]}{_channel_fix(self.channels, image.shape[2])}"
            )
        return image

    def __call__(self, image: np.ndarray, name: str = "image",
                 stats: tuple[Any, Any] | None = None) -> np.ndarray:
        """The network input ``(H, W, channels)`` float32 for a raw NumPy image, after
        :meth:`check` (its warnings as :class:`~keras_unet.images.InputWarning`)."""
        image = self.channels_of(image, name)
        for message in self.check(image, name):
            warnings.warn(message, InputWarning, stacklevel=2)
        return self.apply(image, stats)

    def describe(self) -> str:
        """One line for people: what happens to the raw intensities."""
        if self.mode == "fixed":
            return f"divide raw intensities by {self.scale:g}"
        if self.mode == "percentile":
            return (f"per image: map the {PERCENTILES[0]:g} and {PERCENTILES[1]:g} percentiles "
                    "to 0 and 1")
        return "per image: subtract the mean, divide by the standard deviation"


def image_kind(image: np.ndarray) -> str:
    """The kind of a raw image, from its pixels: ``"grey"`` or ``"colour"``, and ``"dark
    background"`` or ``"bright background"``; e.g. ``"colour, bright background"`` for H&E.

    Used to draw each kind of training image alike (``fit --balance kind``), never to change
    pixels, so a wrong guess costs only how often an image is drawn.

    * colour: 3 or more channels that differ, on average, by more than 2 % of the image's
      intensity range (0.5th to 99.5th percentile); grey stored as RGB is grey;
    * bright background: the median of the mean over channels above its mean. Objects on a
      dark background (fluorescence) skew the intensities to the bright side, so the mean lies
      above the median; dark objects on a bright one (brightfield, H&E) skew them the other
      way.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, any dtype; every 4th pixel each way is looked at.
    """
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"image_kind takes (H, W) or (H, W, C) images, got shape {x.shape}")
    x = x[::4, ::4].astype(np.float32)
    grey = x.mean(axis=-1)
    low, high = np.percentile(x, (0.5, 99.5))
    spread = float((x.max(axis=-1) - x.min(axis=-1)).mean()) if x.shape[-1] >= 3 else 0.0
    colour = "colour" if spread > 0.02 * max(float(high - low), 1e-12) else "grey"
    bright = float(np.median(grey)) > float(grey.mean())
    return f"{colour}, {'bright' if bright else 'dark'} background"


def _channel_fix(wanted: int, given: int) -> str:
    """How to give a model of ``wanted`` channels an image of ``given`` ones (after a ';')."""
    if wanted == 1 and given == 3:
        return ("; it is colour. Give one channel in which the objects are bright on a dark "
                "background (for H&E, the haematoxylin channel: skimage.color.rgb2hed; for "
                "brightfield, the inverted grey image), or train a model on colour images")
    if wanted == 1:
        return "; save the channel the model is for (e.g. the nuclear stain) as an image of its own"
    return f"; give images of {wanted} channels, as the model was trained on"


def _floor(image):
    """``EPS * max(|x|, 1)``: a float for an array, ``(B, 1, 1, 1)`` for a ``(B, H, W, C)`` tensor."""
    if tf.is_tensor(image):
        x = tf.abs(tf.cast(image, tf.float32))
        return EPS * tf.maximum(tf.reduce_max(x, axis=list(range(1, x.shape.rank)), keepdims=True),
                                1.0)
    x = np.asarray(image)
    top = float(np.abs(x).max()) if x.size else 0.0
    return EPS * max(top, 1.0)


def _tf_percentiles(images, qs):
    """Per-image percentiles of a ``(B, H, W, C)`` batch, as NumPy's default (linear) method
    computes them; each ``(B, 1, 1, 1)``."""
    x = tf.cast(images, tf.float32)
    flat = tf.sort(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)
    n = tf.cast(tf.shape(flat)[1], tf.float64)
    out = []
    for q in qs:
        position = q / 100.0 * (n - 1.0)
        below = tf.cast(tf.floor(position), tf.int32)
        above = tf.minimum(below + 1, tf.shape(flat)[1] - 1)
        frac = tf.cast(position - tf.floor(position), tf.float32)
        lo, hi = tf.gather(flat, below, axis=1), tf.gather(flat, above, axis=1)
        out.append(tf.reshape(lo + (hi - lo) * frac, [-1, 1, 1, 1]))
    return out


def normalizer_of(model: keras.Model) -> Normalizer:
    """The preprocessing contract of a U-Net (also after loading from ``.keras``).

    Models saved before the contract existed carry no :class:`Preprocessing` layer and get the
    default, per-image standardisation, which is what they were trained with unless
    ``--normalization fixed`` was given.
    """
    channels = int(model.input_shape[-1])
    for layer in model.layers:
        if isinstance(layer, Preprocessing):
            return Normalizer(layer.mode, layer.scale, channels,
                              getattr(layer, "image_dtype", None), getattr(layer, "image_min", None),
                              getattr(layer, "image_max", None))
    return Normalizer("image", 255.0, channels)


def instance_settings_of(model: keras.Model) -> dict[str, Any]:
    """How the model's probabilities become objects: ``{"border_width", "threshold",
    "min_size", "split_depth"}`` as stored in its :class:`Preprocessing` layer (defaults for
    older models)."""
    for layer in model.layers:
        if isinstance(layer, Preprocessing):
            return {key: getattr(layer, key) for key in INSTANCE_KEYS}
    return {"border_width": 0, "threshold": 0.5, "min_size": 0, "split_depth": 0.0}


def set_instance_settings(model: keras.Model, **settings: Any) -> None:
    """Store instance settings (see :func:`instance_settings_of`) in the model; saved with it."""
    layer = next((lyr for lyr in model.layers if isinstance(lyr, Preprocessing)), None)
    if layer is None:
        raise ValueError(f"model {model.name!r} has no preprocessing layer; build it with "
                         "keras_unet.build_unet")
    for key, value in settings.items():
        if key not in INSTANCE_KEYS:
            raise ValueError(f"unknown instance setting {key!r}")
        setattr(layer, key, type(getattr(layer, key))(value))


# --------------------------------------------------------------------------------------------
# Mirror padding


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
    top, bottom, left, right = (pad,) * 4 if isinstance(pad, int) else pad
    rows = mirror_indices(image.shape[0], top, bottom)
    cols = mirror_indices(image.shape[1], left, right)
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


def normalize(image, mode: str = "image", scale: float | None = None) -> np.ndarray:
    """float32 ``(H, W, C)`` network input for a raw image, with :class:`Normalizer` ``(mode,
    scale)``; ``scale`` defaults to the image's own dtype maximum (:func:`dtype_scale`).

    A shortcut for images that are not tied to a model; a model's own contract is
    ``normalizer_of(model)(image)``.
    """
    scale = dtype_scale(image) if scale is None else scale
    return Normalizer(mode, scale).apply(image)
