"""The package's Keras layers, registered for serialization, in one module.

``.keras`` files of a U-Net hold three custom layers: :class:`Preprocessing` (the preprocessing
contract), :class:`InputSizeGuard` (valid input sizes) and, in training models,
:class:`WeightedCrossEntropy` (the paper's loss). They live together here, with no dependency but
Keras and the pure-Python shape arithmetic, so that registering them (importing this module) can
happen as soon as Keras is loaded, whatever the user imported first (see
``keras_unet/__init__.py``).
"""

from __future__ import annotations

from ._compat import keras, register, tf
from .geometry import Geometry

__all__ = ["Preprocessing", "InputSizeGuard", "WeightedCrossEntropy", "weighted_cross_entropy"]


@register
class Preprocessing(keras.layers.Layer):
    """Identity layer that carries the model's contract in its saved configuration.

    Placed by :func:`keras_unet.build_unet` right after the input. ``mode`` and ``scale`` are the
    preprocessing (:class:`keras_unet.preprocess.Normalizer`, read back by
    :func:`keras_unet.preprocess.normalizer_of`); ``border_width``, ``threshold``, ``min_size``
    and ``split_depth`` are how its probabilities become objects
    (:func:`keras_unet.instances.label_instances`, read back by
    :func:`keras_unet.preprocess.instance_settings_of`): the separating border width it was
    trained with, the decision threshold and neck depth calibrated after training, and the
    smallest object size. ``image_dtype``, ``image_min`` and ``image_max`` record the dtype
    and value range of the training images (None in models saved before they were recorded:
    no check).
    """

    def __init__(self, mode: str = "image", scale: float = 255.0, border_width: int = 0,
                 threshold: float = 0.5, min_size: int = 0, split_depth: float = 0.0,
                 image_dtype: str | None = None, image_min: float | None = None,
                 image_max: float | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in ("image", "fixed", "percentile") or not float(scale) > 0:
            raise ValueError(f"preprocessing needs mode 'image' or 'fixed' and a scale > 0, got "
                             f"{mode!r} and {scale!r}")
        self.mode, self.scale = mode, float(scale)
        self.border_width, self.threshold = int(border_width), float(threshold)
        self.min_size, self.split_depth = int(min_size), float(split_depth)
        self.image_dtype = None if image_dtype is None else str(image_dtype)
        self.image_min = None if image_min is None else float(image_min)
        self.image_max = None if image_max is None else float(image_max)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x):
        return x

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, scale=self.scale, border_width=self.border_width,
                      threshold=self.threshold, min_size=self.min_size,
                      split_depth=self.split_depth, image_dtype=self.image_dtype,
                      image_min=self.image_min, image_max=self.image_max)
        return config


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


def weighted_cross_entropy(logits, labels, weights):
    """Per-pixel weighted softmax cross-entropy.

    Args:
        logits: float ``(B, H, W, K)`` class scores before softmax.
        labels: integer ``(B, H, W)`` class ids in ``[0, K)``.
        weights: float ``(B, H, W)`` weight map w(x).

    Returns:
        float32 ``(B, H, W)``: ``-w(x) * log softmax(logits)[l(x)]``.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return ce * tf.cast(weights, tf.float32)


def _hw(shape) -> str:
    return "x".join("?" if s is None else str(s) for s in shape[1:3])


@register
class WeightedCrossEntropy(keras.layers.Layer):
    """Adds the weighted cross-entropy of ``[logits, labels, weights]`` as the model's loss.

    Call it on ``[logits (B,H,W,K), labels (B,H,W) int, weights (B,H,W) float]``; it adds
    ``sum(w * CE) / (B*H*W)`` with ``add_loss`` and returns the softmax probabilities
    ``(B, H, W, K)`` in float32, so the training model still outputs predictions for metrics.
    Labels and weights must have the network's output size; a mismatch raises a ValueError
    (static shapes) or an InvalidArgumentError (shapes known only at run time).
    """

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def _check_shapes(self, logits_shape, labels_shape, weights_shape) -> None:
        if len(labels_shape) != 3 or len(weights_shape) != 3:
            raise ValueError(
                f"labels and weights must be (batch, height, width); got labels "
                f"{tuple(labels_shape)} and weights {tuple(weights_shape)}"
            )
        for what, shape in (("labels", labels_shape), ("weight map", weights_shape)):
            for a, b in zip(logits_shape[1:3], shape[1:3]):
                if a is not None and b is not None and a != b:
                    raise ValueError(
                        f"{what} are {_hw(shape)} but the network output is {_hw(logits_shape)}: "
                        f"crop labels and weight maps to the output "
                        f"(keras_unet.data.crop_to_output) or use a 'same'-padding network"
                    )

    def call(self, inputs):
        logits, labels, weights = inputs
        self._check_shapes(logits.shape, labels.shape, weights.shape)
        out_hw = tf.shape(logits)[1:3]
        checks = [
            tf.debugging.assert_equal(
                tf.shape(t)[1:3],
                out_hw,
                message=f"{what} must have the network output's height and width",
            )
            for t, what in ((labels, "labels"), (weights, "weight map"))
        ]
        with tf.control_dependencies(checks):
            per_pixel = weighted_cross_entropy(logits, labels, weights)
        n_pixels = tf.cast(tf.size(per_pixel), tf.float32)
        self.add_loss(tf.reduce_sum(per_pixel) / tf.maximum(n_pixels, 1.0))
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
