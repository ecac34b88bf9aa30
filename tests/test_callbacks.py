import numpy as np
import pytest

from keras_unet.callbacks import ValidationMetrics, loss_from_probabilities
from keras_unet.losses import build_training_model
from keras_unet.model import build_unet


def test_loss_from_probabilities_known_answer():
    probs = np.array([[[[0.8, 0.2], [0.1, 0.9]]]], np.float32)  # (1, 1, 2, 2)
    labels = np.array([[[0, 0]]])
    weights = np.array([[[2.0, 0.5]]], np.float32)
    expected = (2.0 * -np.log(0.8) + 0.5 * -np.log(0.1)) / 2
    assert loss_from_probabilities(probs, labels, weights) == pytest.approx(expected, rel=1e-6)
    # a zero probability is floored, never infinite
    assert np.isfinite(loss_from_probabilities(np.array([[[[1.0, 0.0]]]]), np.array([[[1]]]),
                                               np.ones((1, 1, 1))))


def test_validation_loss_is_what_keras_evaluates(rng):
    """One prediction gives the same val_loss as Keras' own pass over the tiles (batches of
    unequal size included: 5 tiles in batches of 2)."""
    unet = build_unet((None, None, 1), depth=2, filters=4, dropout=0.0)
    model = build_training_model(unet)
    model.compile(optimizer="adam")
    tile, out = 44, unet.compute_output_shape((1, 44, 44, 1))[1]
    tiles = {"image": rng.normal(size=(5, tile, tile, 1)).astype(np.float32),
             "labels": rng.integers(0, 2, (5, out, out)).astype(np.int32),
             "weights": rng.uniform(0, 10, (5, out, out)).astype(np.float32),
             "valid": np.ones((5, out, out), bool)}
    keras_loss = model.evaluate({k: tiles[k] for k in ("image", "labels", "weights")},
                                batch_size=2, verbose=0)
    logs: dict = {}
    ValidationMetrics(unet, tiles, batch_size=2).on_epoch_end(0, logs)
    assert logs["val_loss"] == pytest.approx(float(np.ravel(keras_loss)[0]), rel=1e-4)
    assert {"val_pixel_error", "val_iou", "val_dice"} <= set(logs)
