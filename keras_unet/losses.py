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

from ._compat import keras
from .layers import WeightedCrossEntropy, weighted_cross_entropy

__all__ = ["WeightedCrossEntropy", "weighted_cross_entropy", "build_training_model", "unet_from_training_model"]


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
