"""The U-Net builder (Ronneberger et al. 2015, Fig. 1) with the Keras functional API.

The network's shape arithmetic (valid input sizes, margins) is :mod:`keras_unet.geometry`; its
names are re-exported here. The first layers after the input are :class:`Preprocessing`, which
stores how raw images become the input (:mod:`keras_unet.preprocess`), and
:class:`InputSizeGuard`, which rejects sizes the network cannot take.

All sizes are in pixels; shapes are ``(height, width)`` or ``(height, width, channels)``.
"""

from __future__ import annotations

from typing import Sequence

from ._compat import keras
from .geometry import (  # noqa: F401  (re-exported: the shape helpers belong with the builder)
    Geometry,
    check_input_size,
    is_valid_input_size,
    margin,
    nearest_valid_sizes,
    output_shape,
    output_size,
    valid_input_sizes,
)
from .layers import InputSizeGuard, Preprocessing
from .preprocess import Normalizer

__all__ = ["build_unet", "geometry_of", "InputSizeGuard", "Geometry", "check_input_size",
           "is_valid_input_size", "margin", "nearest_valid_sizes", "output_shape", "output_size",
           "valid_input_sizes"]

def geometry_of(model: keras.Model) -> Geometry:
    """The :class:`Geometry` of a model built by :func:`build_unet` (also after loading)."""
    pools = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.MaxPooling2D)]
    convs = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Conv2D)]
    if not convs:
        raise ValueError(f"model {model.name!r} has no Conv2D layers; is it a U-Net?")
    return Geometry(depth=len(pools) + 1, padding=convs[0].padding)



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
    normalizer: Normalizer | None = None,
    border_width: int = 0,
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
        normalizer: how raw images become this network's input (the preprocessing contract,
            stored in the model by a :class:`~keras_unet.preprocess.Preprocessing` layer);
            default per-image standardisation. Its channel count is the input's.
        border_width: the separating border width (px per object) of the training labels,
            recorded for turning probabilities into objects (:mod:`keras_unet.instances`).

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

    normalizer = normalizer or Normalizer()
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = Preprocessing(normalizer.mode, normalizer.scale, border_width, name="preprocessing",
                      image_dtype=normalizer.dtype, image_min=normalizer.low,
                      image_max=normalizer.high)(inputs)
    x = InputSizeGuard(depth, padding, name="size_guard")(x)

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

