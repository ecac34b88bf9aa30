import numpy as np
import pytest

from keras_unet._compat import keras, tf
from keras_unet.losses import (
    WeightedCrossEntropy,
    build_training_model,
    unet_from_training_model,
    weighted_cross_entropy,
)
from keras_unet.model import Geometry, build_unet


def numpy_weighted_ce(logits, labels, weights):
    z = logits - logits.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    return -(weights * picked).sum() / labels.size


def layer_loss(logits, labels, weights):
    layer = WeightedCrossEntropy()
    layer([tf.constant(logits), tf.constant(labels), tf.constant(weights)])
    return float(layer.losses[0])


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_matches_numpy(classes, rng):
    logits = rng.normal(0, 3, (2, 7, 9, classes)).astype(np.float32)
    labels = rng.integers(0, classes, (2, 7, 9)).astype(np.int32)
    weights = rng.uniform(0, 12, (2, 7, 9)).astype(np.float32)
    assert layer_loss(logits, labels, weights) == pytest.approx(
        numpy_weighted_ce(logits, labels, weights), rel=1e-5
    )
    per_pixel = weighted_cross_entropy(logits, labels, weights).numpy()
    assert per_pixel.shape == (2, 7, 9)


def test_unit_weights_equal_sparse_categorical_crossentropy(rng):
    logits = rng.normal(0, 2, (3, 6, 5, 2)).astype(np.float32)
    labels = rng.integers(0, 2, (3, 6, 5)).astype(np.int32)
    ones = np.ones((3, 6, 5), np.float32)
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert layer_loss(logits, labels, ones) == pytest.approx(float(expected), rel=1e-6)


def test_zero_weight_pixels_do_not_count(rng):
    logits = rng.normal(0, 2, (1, 4, 4, 2)).astype(np.float32)
    labels = rng.integers(0, 2, (1, 4, 4)).astype(np.int32)
    w = np.ones((1, 4, 4), np.float32)
    w[0, 0, 0] = 0
    changed = logits.copy()
    changed[0, 0, 0] = [50.0, -50.0]
    assert layer_loss(logits, labels, w) == pytest.approx(layer_loss(changed, labels, w), rel=1e-6)


def test_shape_mismatch_is_a_clear_error():
    model = build_training_model(build_unet((188, 188, 1), depth=5, filters=2))
    assert model.input["labels"].shape[1:] == (4, 4)
    layer = WeightedCrossEntropy()
    with pytest.raises(ValueError, match="labels are 6x6 but the network output is 4x4"):
        layer([tf.zeros((1, 4, 4, 2)), tf.zeros((1, 6, 6), tf.int32), tf.zeros((1, 4, 4))])
    with pytest.raises(ValueError, match="weight map are 5x4"):
        layer([tf.zeros((1, 4, 4, 2)), tf.zeros((1, 4, 4), tf.int32), tf.zeros((1, 5, 4))])


def test_dynamic_shape_mismatch_fails_at_run_time():
    layer = WeightedCrossEntropy()

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2]),
                                  tf.TensorSpec([None, None, None], tf.int32),
                                  tf.TensorSpec([None, None, None])])
    def run(logits, labels, weights):
        return layer([logits, labels, weights])

    with pytest.raises(tf.errors.InvalidArgumentError, match="labels must have the network"):
        run(tf.zeros((1, 4, 4, 2)), tf.zeros((1, 6, 6), tf.int32), tf.zeros((1, 4, 4)))


def fixed_batch(geo, tile, rng, batch=2):
    out = geo.output_size(tile)
    image = rng.random((batch, tile, tile, 1)).astype(np.float32)
    m = geo.margin
    labels = (image[:, m:m + out, m:m + out, 0] > 0.5).astype(np.int32)
    weights = rng.uniform(0.5, 3, (batch, out, out)).astype(np.float32)
    return {"image": image, "labels": labels, "weights": weights}


def test_loss_falls_when_fitting_a_fixed_batch(rng):
    keras.utils.set_random_seed(0)
    unet = build_unet(depth=2, filters=8, dropout=0)
    model = build_training_model(unet)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    batch = fixed_batch(Geometry(2), 34, rng)
    first = float(model.evaluate(batch, verbose=0))
    for _ in range(40):
        model.train_on_batch(batch)
    last = float(model.evaluate(batch, verbose=0))
    assert last < 0.5 * first


def test_training_model_round_trip(tmp_path, rng):
    unet = build_unet(depth=2, filters=4)
    model = build_training_model(unet)
    model.compile(optimizer="adam")
    batch = fixed_batch(Geometry(2), 34, rng)
    model.train_on_batch(batch)  # builds the optimizer, so its state is saved too
    path = tmp_path / "training.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert float(loaded.evaluate(batch, verbose=0)) == pytest.approx(
        float(model.evaluate(batch, verbose=0)), rel=1e-5
    )
    inference = unet_from_training_model(loaded)
    np.testing.assert_allclose(
        inference(batch["image"]).numpy(), unet(batch["image"]).numpy(), atol=1e-6
    )


def test_training_model_needs_a_unet():
    plain = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 1)])
    with pytest.raises(ValueError, match="no layer named 'logits'"):
        build_training_model(plain)
