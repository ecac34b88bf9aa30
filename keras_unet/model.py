"""The U-Net builder and its shape arithmetic.

With the paper's unpadded ("valid") 3x3 convolutions every conv takes 2 px off each dimension, so
the network's output is smaller than its input and only some input sizes work: every 2x2
max-pool must see an even size. For ``depth`` resolution levels (the paper has 5):

* input size  ``n = 2**(depth-1) * b + 4 * (2**(depth-1) - 1)``, where ``b`` is the size at the
  lowest level (32 in the paper's figure);
* output size ``n - 2 * margin`` with ``margin = 6 * 2**(depth-1) - 4`` px per side
  (92 px for depth 5: a 572x572 tile gives a 388x388 output).

With ``padding="same"`` the output has the input's size and the input must be divisible by
``2**(depth-1)``.

All sizes here are in pixels; shapes are ``(height, width)`` or ``(height, width, channels)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ._compat import keras, register, tf

__all__ = [
    "Geometry",
    "build_unet",
    "geometry_of",
    "output_size",
    "output_shape",
    "margin",
    "is_valid_input_size",
    "nearest_valid_sizes",
    "valid_input_sizes",
    "check_input_size",
    "InputSizeGuard",
]

PADDINGS = ("valid", "same")


def _check_depth_padding(depth: int, padding: str) -> None:
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1 (resolution levels), got {depth!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")


@dataclass(frozen=True)
class Geometry:
    """Shape arithmetic of a U-Net with ``depth`` resolution levels and the given conv padding.

    Attributes:
        depth: number of resolution levels (the paper's network has 5, i.e. 4 max-pools).
        padding: ``"valid"`` (the paper: unpadded convs) or ``"same"``.
    """

    depth: int = 5
    padding: str = "valid"

    def __post_init__(self) -> None:
        _check_depth_padding(self.depth, self.padding)

    @property
    def factor(self) -> int:
        """Total down-sampling factor, ``2**(depth-1)``."""
        return 2 ** (self.depth - 1)

    @property
    def offset(self) -> int:
        """Valid input sizes are ``offset + factor * k`` (k >= 1 and at least ``min_input_size``)."""
        return self._sizes_from_index(0)

    @property
    def margin(self) -> int:
        """Pixels lost per side between input and output (0 for ``same`` padding)."""
        return 6 * self.factor - 4 if self.padding == "valid" else 0

    @property
    def min_input_size(self) -> int:
        """The smallest valid input size."""
        return self._sizes_from_index(self._min_index())

    def _min_index(self) -> int:
        # Smallest size ``b`` at the lowest level for which every feature map is >= 1 px.
        if self.padding == "same":
            return 1
        b = 1
        while self._trace(self._sizes_from_index(b)) is None:
            b += 1
        return b

    def _sizes_from_index(self, b: int) -> int:
        if self.padding == "same":
            return self.factor * b
        return self.factor * b + 4 * (self.factor - 1)

    def _trace(self, size: int) -> int | None:
        """Follow ``size`` through the network; the output size, or None if it is invalid."""
        if self.padding == "same":
            return size if size >= 1 and size % self.factor == 0 else None
        s = size
        for _ in range(self.depth - 1):
            s -= 4
            if s < 2 or s % 2:
                return None
            s //= 2
        s -= 4  # bottleneck
        if s < 1:
            return None
        for _ in range(self.depth - 1):
            s = 2 * s - 4
            if s < 1:
                return None
        return s

    def is_valid(self, size: int) -> bool:
        """Whether ``size`` (one spatial dimension, px) is a valid input size."""
        return isinstance(size, int) and self._trace(size) is not None

    def nearest(self, size: int) -> tuple[int | None, int]:
        """The nearest valid input sizes ``(below or equal, above or equal)``; below may be None."""
        k0 = self._min_index()
        step = self.factor
        base = self._sizes_from_index(k0)
        if size <= base:
            return (None, base)
        k = k0 + (size - base) // step
        lower = self._sizes_from_index(k)
        upper = lower if lower == size else self._sizes_from_index(k + 1)
        return (lower, upper)

    def check(self, size: int, what: str = "input size") -> int:
        """Return the output size for ``size``, or raise a ValueError naming the nearest valid sizes."""
        if not isinstance(size, int) or isinstance(size, bool):
            raise ValueError(f"{what} must be an integer number of pixels, got {size!r}")
        out = self._trace(size)
        if out is None:
            lower, upper = self.nearest(size)
            near = f"{lower} or {upper}" if lower is not None else f"{upper} (the smallest)"
            rule = (
                "every 2x2 max-pool needs an even size and the output must keep at least 1 px"
                if self.padding == "valid"
                else f"it must be divisible by {self.factor}"
            )
            raise ValueError(
                f"{what} {size} is not valid for a depth-{self.depth} U-Net with "
                f"{self.padding} padding ({rule}); nearest valid sizes: {near}"
            )
        return out

    def output_size(self, size: int) -> int:
        """Output size (px) for an input size (px); raises ValueError for an invalid size."""
        return self.check(size)

    def input_size_for_output(self, out: int) -> int:
        """The smallest valid input size whose output is at least ``out`` px."""
        if out < 1:
            raise ValueError(f"output size must be >= 1 px, got {out}")
        size = self.min_input_size
        while self._trace(size) < out:
            size += self.factor
        return size

    def skip_crop(self, level: int) -> int:
        """Pixels cropped per side from the contracting map at ``level`` (0 = top) for valid padding.

        The skip map and the up-sampled map it joins differ by a constant that does not depend on
        the input size: ``12 * 2**(depth-2-level) - 8`` px per side; 88, 40, 16, 4 in the paper.
        """
        if self.padding == "same":
            return 0
        if not 0 <= level < self.depth - 1:
            raise ValueError(f"level must be in [0, {self.depth - 2}], got {level}")
        return 12 * 2 ** (self.depth - 2 - level) - 8

    def valid_sizes(self, min_size: int = 1, max_size: int = 1024) -> list[int]:
        """All valid input sizes in ``[min_size, max_size]``."""
        k = self._min_index()
        sizes = []
        while (s := self._sizes_from_index(k)) <= max_size:
            if s >= min_size:
                sizes.append(s)
            k += 1
        return sizes


def geometry_of(model: keras.Model) -> Geometry:
    """The :class:`Geometry` of a model built by :func:`build_unet` (also after loading)."""
    pools = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.MaxPooling2D)]
    convs = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Conv2D)]
    if not convs:
        raise ValueError(f"model {model.name!r} has no Conv2D layers; is it a U-Net?")
    return Geometry(depth=len(pools) + 1, padding=convs[0].padding)


def margin(depth: int = 5, padding: str = "valid") -> int:
    """Context margin in px per side: ``(input - output) / 2``. 92 for the paper's network."""
    return Geometry(depth, padding).margin


def output_size(input_size: int, depth: int = 5, padding: str = "valid") -> int:
    """Output size in px for one spatial input size in px. 572 -> 388 for the paper's network."""
    return Geometry(depth, padding).output_size(input_size)


def output_shape(
    input_shape: Sequence[int], depth: int = 5, padding: str = "valid"
) -> tuple[int, int]:
    """Output ``(height, width)`` for an input ``(height, width[, channels])``."""
    geo = Geometry(depth, padding)
    h, w = int(input_shape[0]), int(input_shape[1])
    return geo.check(h, "input height"), geo.check(w, "input width")


def is_valid_input_size(size: int, depth: int = 5, padding: str = "valid") -> bool:
    """Whether ``size`` px is a valid input size."""
    return Geometry(depth, padding).is_valid(size)


def nearest_valid_sizes(
    size: int, depth: int = 5, padding: str = "valid"
) -> tuple[int | None, int]:
    """The nearest valid input sizes below-or-equal and above-or-equal ``size``."""
    return Geometry(depth, padding).nearest(size)


def valid_input_sizes(
    depth: int = 5, padding: str = "valid", min_size: int = 1, max_size: int = 1024
) -> list[int]:
    """All valid input sizes between ``min_size`` and ``max_size`` px."""
    return Geometry(depth, padding).valid_sizes(min_size, max_size)


def check_input_size(size: int, depth: int = 5, padding: str = "valid") -> int:
    """Raise a ValueError naming the nearest valid sizes if ``size`` is invalid; else the output size."""
    return Geometry(depth, padding).check(size)


@register
class InputSizeGuard(keras.layers.Layer):
    """Identity layer that rejects invalid spatial sizes before any convolution sees them.

    Without it an invalid size surfaces as TensorFlow's "Negative dimension size" deep inside the
    network. Static sizes raise a ValueError naming the nearest valid sizes when the model is called;
    sizes only known at run time are checked with a graph assertion carrying the same rule.
    """

    def __init__(self, depth: int = 5, padding: str = "valid", **kwargs):
        super().__init__(**kwargs)
        self.geometry = Geometry(depth, padding)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x):
        geo = self.geometry
        h, w = x.shape[1], x.shape[2]
        for size, what in ((h, "input height"), (w, "input width")):
            if size is not None:
                geo.check(int(size), what)
        if h is not None and w is not None:
            return x
        # Dynamic sizes: size = factor * b + offset with b >= b_min, the same rule as Geometry.
        offset = geo.offset
        dyn = tf.shape(x)[1:3]
        ok = tf.reduce_all(
            tf.logical_and((dyn - offset) % geo.factor == 0, dyn >= geo.min_input_size)
        )
        assertion = tf.debugging.Assert(
            ok,
            [
                f"Input height and width must be valid for a depth-{geo.depth} U-Net with "
                f"{geo.padding} padding: {geo.factor}*k + {offset} px and at least "
                f"{geo.min_input_size} px (keras_unet.nearest_valid_sizes gives the nearest). Got:",
                dyn,
            ],
        )
        with tf.control_dependencies([assertion]):
            return tf.identity(x)

    def get_config(self):
        config = super().get_config()
        config.update(depth=self.geometry.depth, padding=self.geometry.padding)
        return config


def _conv_block(
    x, filters: int, padding: str, batch_norm: bool, name: str
):
    """Two 3x3 convolutions, each followed by ReLU (and batch norm before it, if asked)."""
    for i in (1, 2):
        x = keras.layers.Conv2D(
            filters,
            3,
            padding=padding,
            use_bias=not batch_norm,
            kernel_initializer="he_normal",  # the paper's Gaussian with std sqrt(2/N), N = 9 * C_in
            name=f"{name}_conv{i}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def build_unet(
    input_shape: Sequence[int | None] = (None, None, 1),
    n_classes: int = 2,
    depth: int = 5,
    filters: int = 64,
    padding: str = "valid",
    dropout: float = 0.5,
    batch_norm: bool = False,
    name: str = "unet",
) -> keras.Model:
    """Build the U-Net of Ronneberger et al. (2015), Fig. 1, with the Keras functional API.

    The defaults are the paper's network: 23 convolution layers (18 3x3, 4 up-convolutions and a
    final 1x1), 31,030,658 parameters for 1 input channel and 2 classes, and a 572x572 input tile
    maps to a 388x388 output.

    Args:
        input_shape: ``(height, width, channels)``; height and width may be None (any valid size
            at call time). Fixed sizes are checked now (see :func:`check_input_size`).
        n_classes: number of output classes K (>= 2; background is a class).
        depth: number of resolution levels; ``depth - 1`` max-pools.
        filters: channels of the first level; they double at each level down.
        padding: ``"valid"`` (the paper; output smaller than input) or ``"same"``.
        dropout: dropout rate at the end of the contracting path (0 turns it off). As in the
            authors' released Caffe network, it acts on the two lowest levels' outputs.
        batch_norm: add batch normalisation before every ReLU (not in the paper).
        name: model name.

    Returns:
        A ``keras.Model`` mapping float images ``(batch, H, W, channels)`` to per-pixel class
        probabilities ``(batch, H', W', n_classes)`` (softmax over the last axis), with
        ``H' = output_size(H)``. The layer ``"logits"`` holds the pre-softmax scores, which the
        training loss uses (see :func:`keras_unet.build_training_model`).

    Raises:
        ValueError: for invalid arguments, or a fixed input size the network cannot take (the
            message names the nearest valid sizes).
    """
    geo = Geometry(depth, padding)
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels), got {tuple(input_shape)!r}"
        )
    channels = input_shape[2]
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"input_shape channels must be a positive integer, got {channels!r}")
    for size, what in ((input_shape[0], "input height"), (input_shape[1], "input width")):
        if size is not None:
            geo.check(size, what)
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(
            f"n_classes must be an integer >= 2 (background counts as a class), got {n_classes!r}"
        )
    if not isinstance(filters, int) or filters < 1:
        raise ValueError(f"filters must be a positive integer, got {filters!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = InputSizeGuard(depth, padding, name="size_guard")(inputs)

    # Contracting path: conv-conv, keep the map for the skip join, max-pool.
    skips = []
    for level in range(depth - 1):
        x = _conv_block(x, filters * 2**level, padding, batch_norm, name=f"down{level}")
        if dropout and level == depth - 2:
            x = keras.layers.Dropout(dropout, name=f"down{level}_dropout")(x)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"down{level}_pool")(x)

    # Bottleneck: the lowest resolution (32x32 with 1024 channels in the paper's figure).
    x = _conv_block(x, filters * 2 ** (depth - 1), padding, batch_norm, name="bottleneck")
    if dropout:
        x = keras.layers.Dropout(dropout, name="bottleneck_dropout")(x)

    # Expansive path: 2x2 up-convolution, crop the skip map to match, concatenate, conv-conv.
    for level in reversed(range(depth - 1)):
        x = keras.layers.Conv2DTranspose(
            filters * 2**level,
            2,
            strides=2,
            kernel_initializer="he_normal",
            name=f"up{level}_upconv",
        )(x)
        skip = skips[level]
        if padding == "valid":
            # Both sizes are known from the arithmetic: crop the skip by the same amount per side.
            skip = keras.layers.Cropping2D(geo.skip_crop(level), name=f"up{level}_crop")(skip)
        x = keras.layers.Concatenate(name=f"up{level}_concat")([skip, x])
        x = _conv_block(x, filters * 2**level, padding, batch_norm, name=f"up{level}")

    logits = keras.layers.Conv2D(
        n_classes, 1, kernel_initializer="he_normal", name="logits"
    )(x)
    probabilities = keras.layers.Softmax(axis=-1, name="probabilities", dtype="float32")(logits)
    return keras.Model(inputs, probabilities, name=name)

