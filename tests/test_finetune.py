"""fit --init MODEL: from a .keras file, a run folder or a packaged name; the architecture and
the contract come from the model, conflicting options and channels are refused in one line,
--freeze-encoder, the fine-tuning learning rate, and where config.json says the weights came
from. Also fine-tuning in plain Keras code, as load_pretrained's docstring shows."""

import json

import cv2
import numpy as np
import pytest

from cli_helpers import one_error_line, run
from keras_unet import pretrained
from keras_unet._compat import keras
from keras_unet.config import FINETUNE_LR
from keras_unet.model import build_unet
from keras_unet.pretrained import file_sha256, package_model

TINY = ["--depth", "2", "--filters", "2", "--tile-size", "44", "--batch-size", "2",
        "--steps-per-epoch", "2", "--epochs", "1"]


def write_folder(folder, n=3, rgb=False, seed=0):
    """n grey (or colour) 8-bit images with binary masks of bright discs."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir(parents=True)
    for i in range(n):
        mask = np.zeros((60, 64), np.uint8)
        for _ in range(4):
            cv2.circle(mask, (int(rng.integers(8, 56)), int(rng.integers(8, 52))), 6, 255, -1)
        image = (mask // 2 + rng.integers(0, 60, mask.shape)).astype(np.uint8)
        if rgb:
            image = np.stack([image, image // 2, 255 - image], -1)
        cv2.imwrite(str(folder / "images" / f"{i}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"{i}.png"), mask)
    return folder / "images", folder / "masks"


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A tiny run (depth 2, 2 filters) trained from grey folders: the model to start from."""
    tmp = tmp_path_factory.mktemp("base")
    images, masks = write_folder(tmp / "data")
    result = run("fit", *TINY, "--images", images, "--masks", masks, "--output", tmp / "run")
    assert result.exit_code == 0, result.output
    return tmp / "run"


def data(tmp_path, **kw):
    return write_folder(tmp_path / "user", seed=5, **kw)


def test_init_from_a_run_folder_starts_from_its_weights_and_records_them(tmp_path, base_run):
    images, masks = data(tmp_path)
    # a learning rate so small that one step cannot move the weights: they must be the model's
    result = run("fit", "--init", base_run, "--images", images, "--masks", masks, "--lr", "1e-9",
                 "--epochs", "1", "--steps-per-epoch", "1", "--tile-size", "44",
                 "--output", tmp_path / "ft")
    assert result.exit_code == 0, result.output
    assert "Fine-tuning" in result.output and "learning rate 1e-09" in result.output
    start = keras.models.load_model(base_run / "model.keras").get_weights()
    tuned = keras.models.load_model(tmp_path / "ft" / "model.keras").get_weights()
    assert max(float(np.abs(a - b).max()) for a, b in zip(start, tuned)) < 1e-6
    fresh = build_unet((None, None, 1), 2, 2, 2).get_weights()
    assert max(float(np.abs(a - b).max()) for a, b in zip(start, fresh)) > 1e-2  # would show
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["init"] == str((base_run / "model.keras").resolve())
    assert config["init_sha256"] == file_sha256(base_run / "model.keras")
    assert (config["depth"], config["filters"], config["init_channels"]) == (2, 2, 1)


def test_init_takes_the_architecture_and_the_fine_tuning_learning_rate(tmp_path, base_run):
    result = run("fit", "--init", base_run / "model.keras", "--dry-run")
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert (resolved["depth"], resolved["filters"], resolved["padding"]) == (2, 2, "valid")
    assert resolved["lr"] == FINETUNE_LR
    assert resolved["tile_size"] == 252  # the default is valid for a depth-2 network
    from_folder = run("fit", "--init", base_run, "--lr", "0.01", "--depth", "2", "--dry-run")
    chosen = json.loads(from_folder.stdout)  # JSON alone on stdout
    assert chosen["lr"] == 0.01  # the user's rate; the same depth is no conflict
    assert f"Using {(base_run / 'model.keras').resolve()}." in from_folder.stderr


@pytest.mark.parametrize("args,message", [
    (["--depth", "3"], "--depth 3 (the model has 2)"),
    (["--filters", "8", "--classes", "3"], "--filters 8 (the model has 2); --classes 3 (the "
                                           "model has 2) would change the model"),
    (["--padding", "same"], "--padding same (the model has valid)"),
    (["--batch-norm"], "--batch-norm on (the model has off)"),
    (["--normalization", "fixed"], "--normalization fixed (the model was trained with image)"),
])
def test_options_that_would_change_the_model_are_refused(tmp_path, base_run, args, message):
    result = run("fit", "--init", base_run, *args, "--output", tmp_path / "r")
    one_error_line(result, message)
    assert not (tmp_path / "r").exists()


def test_init_conflicts_set_by_a_config_file_or_preset(tmp_path, base_run):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"depth": 4}')
    one_error_line(run("fit", "--init", base_run, "--config", cfg),
                   "--depth 4 (from c.json; the model has 2)")
    one_error_line(run("fit", "--init", base_run, "--preset", "paper"),
                   "--depth 5 (from --preset paper; the model has 2)")
    one_error_line(run("fit", "--init", base_run, "--config", cfg, "--depth", "3"),
                   "--depth 3 (the model has 2)")  # the option wins over the file


def test_init_and_resume_together_and_missing_models(tmp_path, base_run):
    one_error_line(run("fit", "--init", base_run, "--resume", base_run),
                   "--init starts a new run from a model's weights and --resume continues")
    one_error_line(run("fit", "--init", tmp_path / "nothing.keras"),
                   "nothing.keras: no such file or folder, nor a packaged model")
    (tmp_path / "empty").mkdir()
    one_error_line(run("fit", "--init", tmp_path / "empty"), "a folder without model.keras")
    one_error_line(run("fit", "--freeze-encoder", "--dry-run"), "--freeze-encoder goes with --init")


def test_channel_mismatch_says_how_to_fix_it(tmp_path, base_run):
    images, masks = data(tmp_path, rgb=True)
    result = run("fit", "--init", base_run, "--images", images, "--masks", masks,
                 "--output", tmp_path / "r")
    one_error_line(result, "the model takes 1-channel images, this one has 3; it is colour. Give "
                           "one channel in which the objects are bright on a dark background")
    one_error_line(result, "(--init gives the model's channel count; without --init, fit trains "
                           "a new model")


def test_grey_images_stored_as_rgb_fit_a_grey_model(tmp_path, base_run):
    images, masks = data(tmp_path)
    for path in images.glob("*.png"):  # the same grey values in three channels
        grey = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(path), np.stack([grey] * 3, -1))
    result = run("fit", "--init", base_run, "--images", images, "--masks", masks, *TINY[-4:],
                 "--tile-size", "44", "--output", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert keras.models.load_model(tmp_path / "r" / "model.keras").input_shape[-1] == 1


def test_freeze_encoder_keeps_the_contracting_path(tmp_path, base_run):
    images, masks = data(tmp_path)
    result = run("fit", "--init", base_run, "--freeze-encoder", "--lr", "0.05", "--images",
                 images, "--masks", masks, *TINY[-4:], "--tile-size", "44",
                 "--output", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "layers of the contracting path frozen" in result.output
    start = keras.models.load_model(base_run / "model.keras")
    tuned = keras.models.load_model(tmp_path / "r" / "model.keras")
    moved = {lyr.name: max(float(np.abs(a - b).max()) for a, b in
                           zip(lyr.get_weights(), tuned.get_layer(lyr.name).get_weights()))
             for lyr in start.layers if lyr.weights}
    encoder = [n for n in moved if n.startswith(("down", "bottleneck"))]
    decoder = [n for n in moved if n.startswith(("up", "logits"))]
    assert encoder and decoder
    assert all(moved[n] == 0 for n in encoder), moved
    assert any(moved[n] > 1e-4 for n in decoder), moved
    assert json.loads((tmp_path / "r" / "config.json").read_text())["freeze_encoder"] is True
    # resuming keeps it frozen
    again = run("fit", "--resume", tmp_path / "r", "--epochs", "2")
    assert again.exit_code == 0, again.output
    resumed = keras.models.load_model(tmp_path / "r" / "model.keras")
    assert all(np.array_equal(a, b) for n in encoder for a, b in
               zip(start.get_layer(n).get_weights(), resumed.get_layer(n).get_weights()))


@pytest.fixture
def packaged(tmp_path, monkeypatch, base_run):
    """A registry holding one tiny packaged model, 'nuclei', made by package_model."""
    models = tmp_path / "models"
    rng = np.random.default_rng(0)
    package_model(base_run / "model.keras", models / "nuclei", "0-test",
                  [rng.integers(0, 255, (50, 60), np.uint8)], {"note": "test"})
    monkeypatch.setattr(pretrained, "MODELS_DIR", models)
    return models / "nuclei"


def test_init_from_a_packaged_name_records_its_version_and_sha(tmp_path, packaged,
                                                                monkeypatch):
    images, masks = data(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = run("fit", "--init", "nuclei", "--images", images, "--masks", masks, *TINY[-4:],
                 "--tile-size", "44", "--output", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "Using the packaged model 'nuclei' (version 0-test" in result.output
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["init"] == "pretrained:nuclei" and config["init_version"] == "0-test"
    assert config["init_sha256"] == file_sha256(packaged / "model.keras")
    # a run folder called nuclei in the working folder wins, and the log says so
    (tmp_path / "nuclei").mkdir()
    result = run("fit", "--init", "nuclei", "--dry-run")
    one_error_line(result, "the folder " + str(tmp_path / "nuclei") + " is not a model (a model "
                   "is a .keras file, a run folder or a SavedModel folder), and a file or folder "
                   "of that name wins over the packaged model; write pretrained:nuclei for the "
                   "packaged one")
    (tmp_path / "nuclei" / "model.keras").write_bytes((tmp_path / "r" / "model.keras").read_bytes())
    result = run("fit", "--init", "nuclei", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "from the working folder, not the packaged model 'nuclei'" in result.output
    assert json.loads(result.stdout)["init"] == str(tmp_path / "nuclei" / "model.keras")


def test_fine_tuning_in_plain_keras_as_the_docstring_shows(packaged):
    from keras_unet import build_training_model, geometry_of, load_pretrained, normalizer_of
    from keras_unet.data import demo_data

    unet = load_pretrained("nuclei")
    assert all(w.dtype == "float32" for w in unet.weights)  # stored in float16
    for layer in unet.layers:
        if layer.name.startswith(("down", "bottleneck")):
            layer.trainable = False
    model = build_training_model(unet)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    images, labels = demo_data(2, 44, seed=1)
    x = np.stack([normalizer_of(unet)(im) for im in images])
    out = geometry_of(unet).output_size(44)
    m = (44 - out) // 2
    y = (labels[:, m:m + out, m:m + out] > 0).astype(np.int32)
    w = np.ones_like(y, np.float32)
    before = [v.copy() for v in unet.get_weights()]
    history = model.fit({"image": x, "labels": y, "weights": w}, batch_size=2, epochs=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = unet.get_weights()  # the U-Net itself was trained (the same layers)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    assert np.array_equal(before[0], after[0])  # down0_conv1's kernel: frozen


def test_the_finetune_curve_example_runs_end_to_end_on_tiny_data(tmp_path, base_run):
    import subprocess
    import sys
    from pathlib import Path

    rng = np.random.default_rng(2)
    data = tmp_path / "he"
    for kind in ("images", "instance_labels"):
        (data / kind).mkdir(parents=True)
    for i in range(5):  # H&E-like: dark purple discs on pink
        labels = np.zeros((60, 64), np.uint16)
        for k in range(1, 4):
            cv2.circle(labels, (int(rng.integers(10, 54)), int(rng.integers(10, 50))), 6, k, -1)
        rgb = np.where(labels[..., None] > 0, [90, 40, 120], [230, 180, 210]).astype(np.uint8)
        rgb = np.clip(rgb + rng.integers(-20, 20, rgb.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(data / "images" / f"s{i}.png"), rgb[..., ::-1])
        cv2.imwrite(str(data / "instance_labels" / f"s{i}.png"), labels)
    script = Path(__file__).resolve().parents[1] / "examples" / "finetune_curve.py"
    out = tmp_path / "curve"
    done = subprocess.run(
        [sys.executable, str(script), "--data", data, "--out", out, "--model", base_run,
         "--n-test", "2", "--n-train", "3", "--steps", "2", "--epochs", "1",
         "--fit-args", "--depth 2 --filters 2 --tile-size 44 --batch-size 2"],
        cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "curve.json").read_text())
    assert 0 <= results["zero_shot"]["ap50"] <= 1
    assert [(r["arm"], r["n_train"], r["steps"]) for r in results["runs"]] == [
        ("fine-tuned", 3, 2), ("scratch", 3, 2)]
    assert "--init" in results["runs"][0]["command"] and "--init" not in results["runs"][1]["command"]
    tuned = json.loads((out / "fine-tuned-n3-s2" / "config.json").read_text())
    assert tuned["init"] == str((base_run / "model.keras").resolve())
    grey = cv2.imread(str(out / "data" / "test" / "images" / f"{results['test_images'][0]}.png"),
                      cv2.IMREAD_UNCHANGED)
    assert grey.ndim == 2  # the haematoxylin channel
    picture = cv2.imread(str(out / "curve.png"))
    assert picture.shape[0] >= 300 and "fine-tuned" in done.stdout
