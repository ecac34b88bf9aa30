"""Packaged models: float16 storage within its stated tolerance, names where model paths go
(predict, evaluate, export for TF Serving and bioimage.io), a file of that name winning, and the
models this installation ships (their info.json, card and sample)."""

import json

import cv2
import numpy as np
import tifffile
import pytest

from cli_helpers import one_error_line, run
from keras_unet import pretrained
from keras_unet._compat import keras
from keras_unet.model import build_unet
from keras_unet.pretrained import (
    PREFIX,
    file_sha256,
    half_precision_error,
    load_pretrained,
    model_source,
    package_model,
    packaged_info,
    packaged_models,
    save_half,
)

TOLERANCE = 0.02  # package_model's default: the largest probability change float16 may cause


@pytest.fixture(scope="module")
def unet():
    keras.utils.set_random_seed(4)
    return build_unet((None, None, 1), depth=3, filters=8)


def test_float16_storage_halves_the_file_and_moves_predictions_within_tolerance(
        unet, tmp_path, rng):
    unet.save(tmp_path / "full.keras")
    save_half(unet, tmp_path / "half.keras")
    import zipfile

    def weights_size(path):  # the weights, without the model's description
        return zipfile.ZipFile(path).getinfo("model.weights.h5").file_size

    saved = weights_size(tmp_path / "full.keras") - weights_size(tmp_path / "half.keras")
    assert saved >= 0.95 * 2 * unet.count_params()  # 2 bytes less per parameter
    loaded = load_from(tmp_path / "half.keras")
    assert all(w.dtype == "float32" for w in loaded.weights)
    images = [rng.integers(0, 255, (70, 90), np.uint8) for _ in range(2)]
    error = half_precision_error(unet, images)
    assert 0 < error["max_abs_probability"] < TOLERANCE
    from keras_unet.tiling import predict_tiled
    from keras_unet.preprocess import normalizer_of

    x = normalizer_of(unet)(images[0])
    diff = np.abs(predict_tiled(unet, x) - predict_tiled(loaded, x)).max()
    assert 0 < diff <= error["max_abs_probability"] + 1e-6  # the same measurement


def load_from(path):
    from keras_unet.predict import load_model

    return load_model(path)


@pytest.fixture
def packaged(tmp_path, monkeypatch, unet, rng):
    """A registry holding one small packaged model called 'nuclei'."""
    unet.save(tmp_path / "m.keras")
    (tmp_path / "config.json").write_text(json.dumps({"depth": 3, "filters": 8}))
    folder = tmp_path / "models" / "nuclei"
    package_model(tmp_path / "m.keras", folder, "0-test",
                  [rng.integers(0, 255, (60, 60), np.uint8)], {"heldout": "none"})
    cv2.imwrite(str(folder / "sample.tif"), rng.integers(0, 255, (96, 100), np.uint8))
    monkeypatch.setattr(pretrained, "MODELS_DIR", tmp_path / "models")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return folder


def test_package_model_writes_info_and_refuses_beyond_tolerance(packaged, tmp_path, rng):
    info = json.loads((packaged / "info.json").read_text())
    assert info["version"] == "0-test" and info["heldout"] == "none"
    assert info["sha256"] == file_sha256(packaged / "model.keras")
    assert info["float16_storage"]["max_abs_probability"] < TOLERANCE
    assert json.loads((packaged / "config.json").read_text())["filters"] == 8
    with pytest.raises(ValueError, match="float16 storage moves the probabilities"):
        package_model(tmp_path / "m.keras", tmp_path / "other", "x",
                      [rng.integers(0, 255, (60, 60), np.uint8)], tolerance=1e-12)


def test_names_resolve_and_a_local_file_wins(packaged, tmp_path):
    assert packaged_models() == ["nuclei"] and packaged_info("nuclei")["version"] == "0-test"
    said = []
    assert model_source("nuclei", said.append).path == packaged / "model.keras"
    assert "packaged model 'nuclei' (version 0-test" in said[0]
    (tmp_path / "work" / "nuclei").mkdir()  # e.g. an earlier `predict ... -o nuclei`
    with pytest.raises(ValueError, match=r"is not a model \(a model is a .keras file, a run "
                                         r"folder or a SavedModel folder\), and a file or folder "
                                         "of that name wins"):
        model_source("nuclei")
    one_error_line(run("predict", "nuclei", packaged / "sample.tif", "-o", tmp_path / "o"),
                   "write pretrained:nuclei for the packaged one, or rename it")
    (tmp_path / "work" / "nuclei" / "model.keras").write_bytes(b"x")  # a run folder
    said.clear()
    assert model_source("nuclei", said.append).path.name == "model.keras"
    assert "from the working folder, not the packaged model 'nuclei'" in said[0]
    assert model_source(PREFIX + "nuclei").path == packaged / "model.keras"
    (tmp_path / "work" / "run").mkdir()
    (tmp_path / "work" / "run" / "model.keras").write_bytes(b"x")
    said.clear()
    assert model_source("run", said.append).path.name == "model.keras"
    assert said == [f"Using {(tmp_path / 'work' / 'run' / 'model.keras').resolve()}."]
    said.clear()
    assert model_source("elsewhere.keras", said.append).path.name == "elsewhere.keras"
    assert said == []  # a file the user named needs no line; errors are the callers'

    with pytest.raises(ValueError, match="'cells' is not a packaged model .packaged models: "
                                         "nuclei"):
        load_pretrained("cells")


def test_a_mistyped_packaged_name_gets_a_suggestion(packaged, tmp_path):
    with pytest.raises(FileNotFoundError, match="nucleii is neither a file nor a packaged "
                                                "model: did you mean nuclei"):
        model_source("nucleii")
    one_error_line(run("predict", "nucleii", packaged / "sample.tif", "-o", tmp_path / "o"),
                   "did you mean nuclei?")
    assert model_source("cells").path.name == "cells"  # nothing near: the caller's own error


def test_predict_and_evaluate_take_a_packaged_name(packaged, tmp_path):
    sample = packaged / "sample.tif"
    result = run("predict", "nuclei", sample, "--instances", "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "Using the packaged model 'nuclei' (version 0-test" in result.output
    # said before any file is read: ahead of the progress bar's label
    assert result.output.index("Using the packaged") < result.output.index("Predicting")
    assert (tmp_path / "out" / "sample_instances.tif").is_file()
    found = int(tifffile.imread(tmp_path / "out" / "sample_instances.tif").max())
    assert f"; objects: sample.tif {found}" in result.output
    (tmp_path / "m").mkdir()
    mask = np.zeros((96, 100), np.uint16)
    mask[20:40, 30:50] = 1
    (tmp_path / "i").mkdir()
    cv2.imwrite(str(tmp_path / "i" / "a.png"), cv2.imread(str(sample), cv2.IMREAD_UNCHANGED))
    cv2.imwrite(str(tmp_path / "m" / "a.png"), mask)
    result = run("evaluate", "nuclei", "--images", tmp_path / "i", "--masks", tmp_path / "m")
    assert result.exit_code == 0, result.output
    assert "Using the packaged model 'nuclei' (version 0-test" in result.output
    one_error_line(run("evaluate", "cells", "--images", tmp_path / "i", "--masks", tmp_path / "m"),
                   "model cells does not exist (nor is it a packaged model: nuclei)")


def test_an_export_is_named_after_its_packaged_model_else_unet(packaged, tmp_path):
    assert pretrained.export_name("nuclei") == "nuclei"
    assert pretrained.export_name("pretrained:nuclei") == "nuclei"
    assert pretrained.export_name(tmp_path / "model.keras") == "unet"


def test_a_packaged_model_passes_the_savedmodel_check(packaged, tmp_path):
    (packaged / "config.json").write_text(json.dumps({"depth": 3, "filters": 8,
                                                      "images": "/dev/machine/images"}))
    result = run("export", "nuclei", "--output", tmp_path / "exp", "--check")  # named nuclei
    assert result.exit_code == 0, result.output
    assert "Using the packaged model 'nuclei'" in result.output and "Check passed." in result.output
    meta = json.loads((tmp_path / "exp" / "nuclei" / "1" / "assets.extra" /
                       "keras_unet.json").read_text())
    assert meta["training_config"]["filters"] == 8  # its config.json went with it
    # but not the path it was trained from on the developers' machine
    assert meta["training_config"]["images"] == "see the model card"


def test_a_packaged_model_passes_the_bioimageio_check(packaged, tmp_path):
    pytest.importorskip("bioimageio.core")
    (packaged / "MODEL_CARD.md").write_text(
        "# keras-unet nuclei model, version 0-test\n\nA U-Net that segments **test nuclei**.\n\n"
        "## How to cite\n\n* A. Author. A data set. J 1 (2020). doi:10.1000/test.1\n"
        "* keras-unet.\n")
    json.dump({**json.loads((packaged / "info.json").read_text()),
               "trained_on": {"demo": "made-up nuclei (CC0)"}}, (packaged / "info.json").open("w"))
    (packaged / "config.json").write_text(json.dumps({"depth": 3, "images": "/dev/machine/x"}))
    result = run("export", "nuclei", "--format", "bioimageio", "--output", tmp_path / "bio",
                 "--check")  # the zip is named after the packaged model
    assert result.exit_code == 0, result.output
    assert "passed for keras_v3, keras_hdf5, tensorflow_saved_model_bundle" in result.output
    import zipfile

    import yaml

    with zipfile.ZipFile(tmp_path / "bio" / "nuclei.zip") as zf:
        sample = np.load(zf.open("test_input.npy"))
        readme = zf.read("README.md").decode()
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    # the card, not the developers' paths, tells what it is and what to cite
    assert "# Model card: keras-unet nuclei model, version 0-test" in readme
    assert "Data: demo: made-up nuclei (CC0)" in readme and "/dev/machine" not in readme
    assert rdf["description"] == ("keras-unet packaged model 'nuclei' 0-test: A U-Net that "
                                  "segments test nuclei.")
    assert {"text": "A. Author. A data set. J 1 (2020)", "doi": "10.1000/test.1"} in rdf["cite"]
    assert [a["name"] for a in rdf["authors"]] == ["keras-unet developers"]
    raw = cv2.imread(str(packaged / "sample.tif"), cv2.IMREAD_UNCHANGED)
    assert sample.max() <= raw.max() and sample.shape[1] <= 96  # cut from its own sample image


# --------------------------------------------------------------------------------------------
# What this installation ships


def test_the_nuclei_model_is_shipped_with_its_card_and_matches_its_info():
    assert "nuclei" in packaged_models()
    folder = pretrained.MODELS_DIR / "nuclei"
    info = packaged_info("nuclei")
    assert info["sha256"] == file_sha256(folder / "model.keras")
    assert info["float16_storage"]["max_abs_probability"] <= info["float16_storage"]["tolerance"]
    assert (folder / "model.keras").stat().st_size < 6e6  # a few MB
    card = (folder / "MODEL_CARD.md").read_text()
    assert info["version"] in card and "CC0" in card
    unet = load_pretrained("nuclei")
    assert unet.input_shape[-1] == 1 and unet.output_shape[-1] == 2
    assert all(w.dtype == "float32" for w in unet.weights)


def test_the_nuclei_model_finds_nuclei_in_its_sample(tmp_path):
    from keras_unet.images import read_image
    from keras_unet.predict import predict_instances

    folder = pretrained.MODELS_DIR / "nuclei"
    labels = predict_instances(load_pretrained("nuclei"), read_image(folder / "sample.tif"))
    assert labels.max() >= 5  # the sample holds dozens of nuclei


def test_sample_is_the_packaged_models_own_image(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "cells"
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"")
    monkeypatch.setattr(pretrained, "MODELS_DIR", tmp_path / "models")
    with pytest.raises(ValueError, match="'cells' has no sample image"):
        pretrained.sample("cells")
    tifffile.imwrite(folder / "sample.tif", np.zeros((4, 4), np.uint16))
    assert pretrained.sample("cells") == folder / "sample.tif"
    with pytest.raises(ValueError, match="'tissue' is not a packaged model"):
        pretrained.sample("tissue")
