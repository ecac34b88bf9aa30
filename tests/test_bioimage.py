"""bioimage.io export: geometry, the portable network, the description, and the package tested by
bioimageio.core (in a clean process without keras_unet) and tiled by it."""

import json
import zipfile

import numpy as np
import pytest
import yaml
from cli_helpers import one_error_line, run

from keras_unet import build_unet
from keras_unet.bioimage_model import (
    package_geometry,
    portable_config,
    portable_network,
    preprocessing_steps,
    rdf_name,
)
from keras_unet.geometry import Geometry
from keras_unet.preprocess import PERCENTILES, Normalizer


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_package_sizes_are_valid_and_leave_a_step_inside_the_halo(depth, padding):
    geo = Geometry(depth, padding)
    pg = package_geometry(geo)
    assert pg.step == 2 ** (depth - 1)
    assert pg.min - 2 * pg.halo >= pg.step
    for k in range(4):
        n = pg.min + k * pg.step
        # the network inside sees n + 2 * halo (valid) or n (same) pixels
        assert geo.is_valid(n + 2 * pg.halo if padding == "valid" else n)
    smaller = pg.min - pg.step  # the size below min is invalid or leaves too little inside
    inside = smaller + 2 * pg.halo if padding == "valid" else smaller
    assert smaller - 2 * pg.halo < pg.step or not geo.is_valid(inside)
    if padding == "valid":
        assert pg.halo == geo.margin


def test_paper_geometry_numbers():
    pg = package_geometry(Geometry(5, "valid"))
    assert (pg.min, pg.step, pg.halo) == (212, 16, 92)  # 212 + 184 = 396 = 188 + 13 * 16
    assert pg.size(1000) == 996 and pg.size(100) == 212


def test_portable_config_uses_builtin_layers_only_and_float32():
    model = build_unet((None, None, 2), depth=3, filters=4)
    config = portable_config(model.get_config(), pad=20)
    registered = [layer.get("registered_name") for layer in config["layers"]]
    assert not any(r and r.startswith("keras_unet") for r in registered)
    classes = [layer["class_name"] for layer in config["layers"]]
    assert classes[:3] == ["InputLayer", "ZeroPadding2D", "Identity"]
    policies = {json.dumps(layer["config"]["dtype"]) for layer in config["layers"][1:]}
    assert policies == {json.dumps({"module": "keras", "class_name": "DTypePolicy",
                                    "config": {"name": "float32"}, "registered_name": None})}
    # nothing refers to the removed layers any more
    text = json.dumps(config)
    assert '"preprocessing"' not in text and '"size_guard"' not in text


def test_portable_network_equals_the_model_on_the_zero_padded_input(rng):
    model = build_unet((None, None, 2), depth=3, filters=4)
    pg = package_geometry(Geometry(3, "valid"))
    net = portable_network(model)
    x = rng.normal(size=(2, pg.min + pg.step, pg.min, 2)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (pg.halo, pg.halo), (pg.halo, pg.halo), (0, 0)))
    expected = np.asarray(model(padded, training=False))
    got = np.asarray(net(x, training=False))
    assert got.shape == x.shape[:3] + (2,)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_portable_network_of_a_mixed_precision_model_computes_in_float32(rng):
    import keras

    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = build_unet((None, None, 1), depth=2, filters=4)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert mixed.get_layer("down0_conv1").compute_dtype == "bfloat16"
    net = portable_network(mixed)
    assert {layer.compute_dtype for layer in net.layers[1:]} == {"float32"}
    plain = build_unet((None, None, 1), depth=2, filters=4)
    plain.set_weights(mixed.get_weights())
    x = rng.normal(size=(1, 40, 40, 1)).astype(np.float32)
    halo = package_geometry(Geometry(2, "valid")).halo
    expected = np.asarray(plain(np.pad(x, ((0, 0), (halo, halo), (halo, halo), (0, 0)))))
    np.testing.assert_allclose(np.asarray(net(x)), expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["image", "fixed", "percentile"])
def test_declared_preprocessing_matches_the_normalizer(mode, rng):
    """The rdf's preprocessing, computed with NumPy as the spec defines it, gives the network
    input that keras_unet's Normalizer gives."""
    normalizer = Normalizer(mode, 4095.0, channels=2)
    raw = rng.integers(0, 4096, size=(40, 30, 2)).astype(np.float32)
    (step,) = preprocessing_steps(normalizer)
    kw = step["kwargs"]
    if step["id"] == "zero_mean_unit_variance":
        ref = (raw - raw.mean()) / (raw.std() + kw["eps"])
    elif step["id"] == "scale_linear":
        ref = raw * kw["gain"] + kw["offset"]
    else:
        assert (kw["min_percentile"], kw["max_percentile"]) == PERCENTILES
        lo, hi = np.percentile(raw, [kw["min_percentile"], kw["max_percentile"]])
        ref = (raw - lo) / (hi - lo + kw["eps"])
    assert set(kw.get("axes", ["y", "x", "channel"])) == {"y", "x", "channel"}
    np.testing.assert_allclose(normalizer.apply(raw), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, expected", [("unet", "unet (keras-unet U-Net)"),
                                            ("nuclei_v2.1", "nuclei_v2-1"),
                                            ("my model", "my model")])
def test_rdf_name(name, expected):
    assert rdf_name(name) == expected


# --------------------------------------------------------------------------------------------
# The package, end to end (needs the bioimageio extra, which the test extra installs)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A depth-3 model saved as a run would be: model.keras, config.json and history.csv."""
    import keras

    keras.utils.set_random_seed(3)
    run = tmp_path_factory.mktemp("run")
    build_unet((None, None, 1), depth=3, filters=4).save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"depth": 3, "filters": 4, "epochs": 2,
                                                 "steps_per_epoch": 5, "images": None}))
    (run / "history.csv").write_text("epoch,loss,val_loss,val_ap50\n0,1.0,0.9,nan\n"
                                     "1,0.8,0.7,0.25\n")
    return run


def test_cli_export_writes_a_package_that_bioimageio_core_passes(tiny_run, tmp_path):
    pytest.importorskip("bioimageio.core")
    out = tmp_path / "bio"
    result = run("export", tiny_run / "model.keras", "--format", "bioimageio", "--output", out,
                    "--name", "tiny", "--authors", "A. Person; B. Person", "--check")
    assert result.exit_code == 0, result.output
    assert (f"bioimageio test {out / 'tiny.zip'}: passed for keras_v3, keras_hdf5, "
            "tensorflow_saved_model_bundle (bioimageio.core ") in result.output
    assert sorted(p.name for p in out.iterdir()) == ["tiny.zip"]  # no temporary files left
    with zipfile.ZipFile(out / "tiny.zip") as zf:
        names = set(zf.namelist())
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        readme = zf.read("README.md").decode()
        test_in = np.load(zf.open("test_input.npy"))
    assert {"model.keras", "model.h5", "saved_model.zip", "test_input.npy", "test_output.npy",
            "cover.png", "README.md"} <= names
    y = rdf["inputs"][0]["axes"][1]
    assert y["size"] == {"min": 44, "step": 4}
    out_y = rdf["outputs"][0]["axes"][1]
    assert out_y["halo"] == 20 and out_y["size"]["offset"] == 0
    assert rdf["inputs"][0]["preprocessing"][1]["id"] == "zero_mean_unit_variance"
    assert [a["name"] for a in rdf["authors"]] == ["A. Person", "B. Person"]
    assert any(c.get("doi") == "10.1007/978-3-319-24574-4_28" for c in rdf["cite"])
    assert rdf["config"]["keras_unet"]["training"]["epochs"] == 2
    assert "| AP at IoU 0.5 | 0.250 |" in readme and "## Validation" in readme
    assert (test_in.shape[1] - 44) % 4 == 0 and test_in.shape[0] == 1


def test_bioimageio_core_tiling_equals_keras_unet_predict(tiny_run, tmp_path, rng,
                                                          monkeypatch):
    """Blocks smaller than the image, halo cropped by bioimageio.core: the same probabilities as
    keras-unet's own prediction of the whole image."""
    pytest.importorskip("bioimageio.core")
    import cv2
    from bioimageio.core import Tensor, load_description, predict

    monkeypatch.chdir(tmp_path)  # core unzips the SavedModel into the working directory

    from keras_unet.bioimage import export_bioimageio
    from keras_unet.predict import Predictor, load_model

    model = load_model(tiny_run / "model.keras")
    package = export_bioimageio(model, tmp_path / "tiling.zip")  # a zip path works as well
    assert package == tmp_path / "tiling.zip"
    image = cv2.GaussianBlur(rng.random((200, 168)).astype(np.float32), (0, 0), 3)
    sample = predict(model=load_description(package), blocksize_parameter=2, inputs={
        "raw": Tensor.from_numpy(image[None, ..., None], dims=("batch", "y", "x", "channel"))})
    tiled = sample.members["probabilities"].data.to_numpy()[0]
    whole = Predictor(model)(image)
    assert tiled.shape == whole.shape == (200, 168, 2)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


@pytest.mark.parametrize("args, message", [
    (["--tile-size", "188"], "--tile-size is an option of --format savedmodel"),
    (["--version", "2"], "--version is an option of --format savedmodel"),
    (["--license", "NOT-A-LICENCE"], "the bioimage.io description is not valid: license"),
    (["--image", "missing.png"], "--image missing.png does not exist"),
    (["--authors", " ; "], "--authors must name at least one author"),
    (["--name", "a/b"], "--name 'a/b' cannot be a file name"),
])
def test_export_bad_bioimageio_options_get_one_line(tiny_run, tmp_path, monkeypatch, args,
                                                    message):
    pytest.importorskip("bioimageio.spec")
    monkeypatch.chdir(tmp_path)
    result = run("export", tiny_run / "model.keras", "--format", "bioimageio", "--output",
                    "bio", *args)
    assert result.exit_code == 1
    one_error_line(result, message)  # after at most a few progress lines
    assert len(result.output.strip().splitlines()) <= 4
    assert not (tmp_path / "bio").exists()  # nothing half-written, no empty folder


def test_export_refuses_to_replace_a_package_and_savedmodel_refuses_bioimageio_options(
        tiny_run, tmp_path):
    (tmp_path / "unet.zip").write_text("an older package")
    result = run("export", tiny_run / "model.keras", "--format", "bioimageio", "--output",
                    tmp_path)
    assert result.exit_code == 1 and "pass --overwrite to replace it" in result.output
    assert (tmp_path / "unet.zip").read_text() == "an older package"
    result = run("export", tiny_run / "model.keras", "--authors", "Me", "--output", tmp_path)
    assert result.exit_code == 1 and "go with --format bioimageio" in result.output


def test_missing_bioimageio_gets_the_install_command(tiny_run, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "bioimageio", None)
    result = run("export", tiny_run / "model.keras", "--format", "bioimageio", "--output",
                    tmp_path / "bio")
    assert result.exit_code == 1
    assert 'pip install "keras-unet[bioimageio]"' in result.output
    assert not (tmp_path / "bio").exists()


def test_a_failed_check_prints_the_report_and_exits_non_zero(tiny_run, tmp_path, monkeypatch):
    pytest.importorskip("bioimageio.spec")
    import keras_unet.bioimage as bioimage

    def failing(package, python=None, timeout=900):
        return [{"format": "keras_v3", "status": "failed", "report": "THE FULL REPORT",
                 "core": "0.11.0"},
                {"format": "keras_hdf5", "status": "passed", "report": "fine", "core": "0.11.0"}]

    monkeypatch.setattr(bioimage, "check_bioimageio", failing)
    result = run("export", tiny_run / "model.keras", "--format", "bioimageio", "--output",
                    tmp_path, "--check")
    assert result.exit_code == 1
    assert "THE FULL REPORT" in result.output and "fine" not in result.output
    assert "failed for keras_v3; passed for keras_hdf5 (bioimageio.core 0.11.0)" in result.output
    assert "Error: bioimageio test failed for keras_v3" in result.output
    assert (tmp_path / "unet.zip").is_file()  # kept, as the message says
