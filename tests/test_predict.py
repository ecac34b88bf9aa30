"""keras_unet.predict: the preprocessing contract travels with the model, files in and out."""

import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from keras_unet._compat import keras
from keras_unet.cli import main
from keras_unet.data import demo_data
from keras_unet.model import build_unet
from keras_unet.predict import Predictor, expand_inputs, load_model, predict_files
from keras_unet.preprocess import Normalizer, normalizer_of
from keras_unet.tiling import predict_tiled

TINY = ["--depth", "2", "--filters", "4", "--tile-size", "44", "--epochs", "1",
        "--steps-per-epoch", "3", "--batch-size", "2"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def write_16bit_data(folder, n=3, size=60, gain=3000):
    """Demo cells as 16-bit PNGs using a small part of the range (so "fixed" and per-image
    normalisation give very different network inputs), with binary masks."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    images, labels = demo_data(n, size, seed=3)
    for i, (image, lab) in enumerate(zip(images, labels)):
        cv2.imwrite(str(folder / "images" / f"c{i}.png"), (image[..., 0] * gain).astype(np.uint16))
        cv2.imwrite(str(folder / "masks" / f"c{i}.png"), ((lab > 0) * 255).astype(np.uint8))
    return folder / "images", folder / "masks"


def predicted_mask(model, image, out, name):
    result = run("predict", model, image, "--output", out / name, "--no-overlay")
    assert result.exit_code == 0, result.output
    return cv2.imread(str(out / name / f"{image.stem}_mask.png"), cv2.IMREAD_UNCHANGED)


def test_every_form_of_the_model_gives_the_same_mask(tmp_path):
    images, masks = write_16bit_data(tmp_path / "data")
    run_dir = tmp_path / "run"
    fit = run("fit", *TINY, "--images", images, "--masks", masks, "--normalization", "fixed",
              "--output", run_dir, "--export", "m", "--export-dir", tmp_path / "exp")
    assert fit.exit_code == 0, fit.output
    moved = tmp_path / "elsewhere" / "copy.keras"
    moved.parent.mkdir()
    shutil.copy(run_dir / "model.keras", moved)

    new_image = tmp_path / "new.png"
    raw = (demo_data(1, (70, 90), seed=11)[0][0, ..., 0] * 3000).astype(np.uint16)
    cv2.imwrite(str(new_image), raw)
    out = tmp_path / "pred"
    reference = predicted_mask(run_dir / "model.keras", new_image, out, "model")
    for name, model in (("best", run_dir / "checkpoints" / "best.keras"), ("moved", moved),
                        ("saved_model", tmp_path / "exp" / "m" / "1")):
        np.testing.assert_array_equal(predicted_mask(model, new_image, out, name), reference,
                                      err_msg=name)

    # plain Python: keras.models.load_model, the model's own contract, predict_tiled
    unet = keras.models.load_model(moved)
    normalizer = normalizer_of(unet)
    assert normalizer == Normalizer("fixed", 65535.0, 1)
    training = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(images.iterdir())]
    assert (normalizer.dtype, normalizer.low, normalizer.high) == (  # recorded by fit
        "uint16", float(min(t.min() for t in training)), float(max(t.max() for t in training)))
    plain = predict_tiled(unet, normalizer(raw)).argmax(-1)
    np.testing.assert_array_equal((plain * 255).astype(np.uint8), reference)
    # ... and the test can fail: the other normalisation gives another answer
    other = predict_tiled(unet, Normalizer("image", 65535.0)(raw))
    assert not np.allclose(other, predict_tiled(unet, normalizer(raw)), atol=1e-3)


@pytest.mark.parametrize("mode,scale", [("image", 255.0), ("fixed", 255.0), ("fixed", 65535.0),
                                        ("percentile", 255.0)])
def test_contract_survives_saving_and_loading(tmp_path, mode, scale):
    net = build_unet((None, None, 3), depth=2, filters=2, normalizer=Normalizer(mode, scale))
    net.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert normalizer_of(loaded) == Normalizer(mode, scale, 3)


@pytest.mark.parametrize("mode", ["image", "percentile"])
def test_an_image_scaled_to_0_1_is_normalised_like_its_16_bit_original(rng, mode):
    """A 12-bit image in 16 bits (std about 0.003 of the dtype range once scaled to 0..1, as
    skimage.img_as_float does) gives a model trained on 16-bit images the same input either way,
    in NumPy, in the graph and streamed; the floor of the divisor is relative to the image."""
    import tensorflow as tf

    from keras_unet.lazyio import Source, streamed_stats

    raw = (rng.normal(300, 150, (40, 30, 1)).clip(0, 4095)).astype(np.uint16)
    scaled = raw.astype(np.float32) / 65535
    normalizer = Normalizer(mode, 65535.0)
    expected = normalizer(raw)
    np.testing.assert_allclose(normalizer(scaled), expected, rtol=1e-4, atol=1e-4)
    graph = normalizer.apply(tf.constant(scaled[None])).numpy()[0]
    np.testing.assert_allclose(graph, expected, rtol=1e-4, atol=1e-4)
    if mode == "image":
        streamed = streamed_stats(Source(scaled, "a"), normalizer, 7)
        np.testing.assert_allclose(normalizer.apply(scaled, streamed), expected, rtol=1e-4,
                                   atol=1e-4)
    assert float(expected.std()) > 0.1  # not flattened towards 0


def test_numpy_and_graph_normalisation_agree(rng):
    image = rng.integers(0, 65535, (31, 17, 2)).astype(np.uint16)
    import tensorflow as tf

    for normalizer in (Normalizer("image", 65535.0, 2), Normalizer("fixed", 65535.0, 2),
                       Normalizer("percentile", 65535.0, 2)):
        graph = normalizer.apply(tf.constant(image[None].astype(np.float32))).numpy()[0]
        np.testing.assert_allclose(normalizer(image), graph, rtol=1e-5, atol=1e-5)
    x = Normalizer("image").apply(image)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-4
    np.testing.assert_allclose(Normalizer("fixed", 65535.0).apply(image), image / 65535.0, rtol=1e-6)
    low, high = np.percentile(image, (1, 99.8))
    np.testing.assert_allclose(Normalizer("percentile").apply(image), (image - low) / (high - low),
                               rtol=1e-5, atol=1e-5)
    flat = np.full((5, 5), 7, np.uint8)
    assert np.all(Normalizer("image")(flat) == 0)


def test_grey_stored_as_rgb_and_wrong_channels():
    normalizer = Normalizer(channels=1)
    grey_rgb = np.repeat(np.arange(12, dtype=np.uint8).reshape(3, 4, 1), 3, axis=2)
    assert normalizer.channels_of(grey_rgb).shape == (3, 4, 1)
    colour = grey_rgb.copy()
    colour[0, 0, 1] = 99
    with pytest.raises(ValueError, match="a.png: the model takes 1-channel images, this one has 3"):
        normalizer(colour, "a.png")


def test_old_models_without_the_layer_default_to_per_image():
    inputs = keras.Input((None, None, 1))
    plain = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    assert normalizer_of(plain) == Normalizer("image", 255.0, 1)


def test_corrupt_model_file_is_named(tmp_path):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not a Keras model file"):
        load_model(broken)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Predictor(tmp_path / "missing.keras")


def test_duplicate_stems_are_refused(tmp_path):
    for name in ("a.png", "a.tif"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ValueError, match="share the name 'a'"):
        expand_inputs([tmp_path])


def test_predict_files_leaves_no_empty_folder(tmp_path):
    net = build_unet(depth=2, filters=2)
    rgb = tmp_path / "rgb.png"
    cv2.imwrite(str(rgb), np.dstack([np.zeros((30, 30), np.uint8), np.full((30, 30), 90, np.uint8),
                                     np.full((30, 30), 200, np.uint8)]))
    report = predict_files(net, [rgb], tmp_path / "out")
    assert report.failed and "1-channel" in report.failed[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shape", [(37, 53), (300, 41)])
def test_predict_instances_writes_a_label_tiff_of_the_image_size(tmp_path, shape):
    import tifffile

    from keras_unet.preprocess import instance_settings_of, set_instance_settings

    net = build_unet(depth=2, filters=2, border_width=1)
    set_instance_settings(net, threshold=0.3, min_size=2, split_depth=1.5)
    net.save(tmp_path / "m.keras")
    assert instance_settings_of(load_model(tmp_path / "m.keras")) == {
        "border_width": 1, "threshold": 0.3, "min_size": 2, "split_depth": 1.5}
    image = tmp_path / "cells.png"
    cv2.imwrite(str(image), (demo_data(1, shape, seed=2)[0][0, ..., 0] * 255).astype(np.uint8))
    result = run("predict", tmp_path / "m.keras", image, "-o", tmp_path / "out", "--instances")
    assert result.exit_code == 0, result.output
    labels = tifffile.imread(tmp_path / "out" / "cells_instances.tif")
    assert labels.shape == shape and labels.dtype == np.uint16
    overlay = cv2.imread(str(tmp_path / "out" / "cells_overlay.png"))
    assert overlay.shape[:2] == shape


def test_predict_instances_api_uses_the_model_settings(rng):
    from keras_unet.predict import InstanceOptions, predict_instances

    net = build_unet(depth=2, filters=2, border_width=1)
    image = (rng.random((40, 44)) * 255).astype(np.uint8)
    labels = predict_instances(net, image)
    assert labels.shape == (40, 44) and labels.dtype == np.uint16
    everything = predict_instances(net, image, InstanceOptions(threshold=0.0, min_size=0))
    assert everything.max() == 1 and np.all(everything == 1)  # threshold 0: one object, everywhere
