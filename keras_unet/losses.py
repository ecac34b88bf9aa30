"""The paper's weighted pixel-wise cross-entropy, as a Keras layer with a weight-map input.

The energy of Ronneberger et al. (2015), eq. 1, is ``E = -sum_x w(x) log p_{l(x)}(x)``: a softmax
over the K class scores at every pixel x, the log-probability of the true class l(x), weighted by
the precomputed map w(x) (see :mod:`keras_unet.weights`).

**Normalisation.** :class:`WeightedCrossEntropy` divides that sum by the number of pixels in the
batch, ``B * H * W`` (not by the sum of the weights). So with ``w == 1`` it equals Keras'
``SparseCategoricalCrossentropy(from_logits=True)`` (mean over pixels), and a weight of 10 on a
pixel counts that pixel exactly ten times, as in the paper's sum. Pixels with weight 0 (padding
outside the image, say) contribute nothing.

Keras' per-pixel ``sample_weight`` has a history of shape errors, so the weight map is an input of
the training model instead (:func:`build_training_model`): ``model.fit`` takes a dataset of
``{"image", "labels", "weights"}`` dictionaries and needs no ``loss`` in ``compile``.
"""

from __future__ import annotations

from ._compat import keras, register, tf

__all__ = ["WeightedCrossEntropy", "weighted_cross_entropy", "build_training_model", "unet_from_training_model"]


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


def build_training_model(unet: keras.Model, name: str | None = None) -> keras.Model:
    """Wrap a U-Net from :func:`keras_unet.build_unet` for training with a weight map.

    The training model shares the U-Net's layers (training it trains ``unet``) and has three
    inputs: ``image`` ``(B, H, W, C)`` float, ``labels`` ``(B, H', W')`` int32 class ids and
    ``weights`` ``(B, H', W')`` float32, where ``H', W'`` is the network's output size. Its output
    is the softmax probabilities; its loss is :class:`WeightedCrossEntropy`. Compile it with an
    optimizer only::

        model = build_training_model(build_unet(filters=16))
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.99))
        model.fit(dataset_of_dicts)   # {"image": ..., "labels": ..., "weights": ...}
    """
    try:
        logits = unet.get_layer("logits").output
    except ValueError as exc:
        raise ValueError(
            f"model {unet.name!r} has no layer named 'logits'; build it with keras_unet.build_unet"
        ) from exc
    image = unet.inputs[0]
    out_hw = tuple(unet.output_shape[1:3])
    labels = keras.Input(shape=out_hw, dtype="int32", name="labels")
    weights = keras.Input(shape=out_hw, dtype="float32", name="weights")
    # float32 even under a mixed-precision policy: the loss is summed over many pixels.
    probabilities = WeightedCrossEntropy(name="weighted_loss", dtype="float32")(
        [logits, labels, weights]
    )
    return keras.Model(
        {"image": image, "labels": labels, "weights": weights},
        probabilities,
        name=name or f"{unet.name}_training",
    )


def unet_from_training_model(model: keras.Model) -> keras.Model:
    """The inference U-Net (image -> probabilities) inside a training model, sharing its weights."""
    image = model.get_layer("image").output
    logits = model.get_layer("logits").output
    probabilities = keras.layers.Softmax(axis=-1, name="probabilities", dtype="float32")(logits)
    return keras.Model(image, probabilities, name=model.name.removesuffix("_training"))
