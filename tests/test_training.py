"""Training runs: settings and their precedence, checkpoints and resume after SIGKILL, NaN stop,
Ctrl-C, validation metrics and curves, mixed precision, and a real two-worker run."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from keras_unet._compat import keras
from keras_unet.cli import main
from keras_unet.data import demo_data
from keras_unet.config import TrainConfig
from keras_unet.settings import load_config_file
from keras_unet.training import (
    TrainingDiverged,
    TrainingInterrupted,
    prepare_training_set,
    train,
)

TINY = dict(depth=2, filters=2, tile_size=44, batch_size=2, steps_per_epoch=3, epochs=2)
TINY_CLI = ["--depth", "2", "--filters", "2", "--tile-size", "44", "--batch-size", "2",
            "--steps-per-epoch", "3"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def tiny_data(config, n=3, size=48, seed=0):
    images, labels = demo_data(n, size, seed=seed)
    return prepare_training_set(list(images), list(labels), config)


def cli_command(*args):
    """The CLI in a new process. Run it with ``cwd`` outside the repository: from the repository
    root, ``-m`` would find the source folder keras_unet/, which has no ``cli`` (it is mapped
    in at install time)."""
    return [sys.executable, "-m", "keras_unet.cli", *map(str, args)]


# --------------------------------------------------------------------------------------------
# Settings


def test_config_file_and_option_precedence(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("filters: 8\nlr: 0.05\nrotation: 0\nelastic-sigma: 4\n")
    result = run("fit", "--preset", "paper", "--config", cfg, "--lr", "0.5", "--dry-run")
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["optimizer"] == "sgd" and resolved["tile_size"] == 572  # from the preset
    assert resolved["filters"] == 8 and resolved["rotation"] == 0  # the file beats the preset
    assert resolved["elastic_sigma"] == 4  # dashes work in files too
    assert resolved["lr"] == 0.5  # the command line beats the file
    assert resolved["momentum"] == 0.99 and resolved["batch_size"] == 1
    # the CLI's defaults (kept beside the options so --help needs no TensorFlow) are TrainConfig's
    assert json.loads(run("fit", "--dry-run").output) == TrainConfig().to_dict()


def test_no_augment_and_the_paper_preset_have_no_zoom():
    """The zoom is a default of ours, not the paper's: both switch it off."""
    assert TrainConfig().zoom > 0
    assert json.loads(run("fit", "--no-augment", "--dry-run").output)["zoom"] == 0
    assert json.loads(run("fit", "--preset", "paper", "--dry-run").output)["zoom"] == 0


def test_resume_of_a_run_recorded_before_the_zoom_keeps_it_off(tmp_path):
    from keras_unet.runs import resume_config

    run_dir = tmp_path / "old"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.keras").write_bytes(b"")
    recorded = TrainConfig(depth=2, filters=2).to_dict()
    (run_dir / "config.json").write_text(json.dumps({**recorded, "zoom": 0.3}))
    assert resume_config(run_dir).zoom == 0.3  # recorded: kept
    del recorded["zoom"]
    (run_dir / "config.json").write_text(json.dumps(recorded))
    assert resume_config(run_dir).zoom == 0.0  # not recorded: the run trained without it


def test_json_config_and_unknown_keys(tmp_path):
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"depth": 3, "epochs": 2}))
    assert load_config_file(good) == {"depth": 3, "epochs": 2}
    bad = tmp_path / "bad.yaml"
    bad.write_text("depht: 3\nfilters: 8\nlearning_rate: 1\n")
    result = run("fit", "--config", bad, "--dry-run")
    assert result.exit_code == 1
    assert "unknown config file" in result.output and "depht, learning_rate" in result.output
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    assert "not valid JSON" in run("fit", "--config", broken).output


@pytest.mark.parametrize("text,message", [
    ("lr: abc", "lr must be a number, got 'abc'"),
    ("momentum: [1]", "momentum must be a number"),
    ("seed: 1.5", "seed must be an integer, got 1.5"),
    ("jit: 1", "jit must be true or false"),
    ("images: 5", "images must be a string"),
    ("calibrate_metric: f1", "calibrate_metric must be ap50 or rand, got 'f1'"),
    ("calibrate_tta: yes please", "calibrate_tta must be true or false"),
])
def test_config_values_of_the_wrong_type_are_one_line(tmp_path, text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text + "\n")
    result = run("fit", "--config", cfg, "--dry-run")
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["--no-augment", "--rotation", "5"], "--no-augment contradicts --rotation"),
    (["--no-weight-map", "--w0", "3"], "--no-weight-map contradicts"),
    (["--val-fraction", "0.2", "--val-images", "a", "--val-masks", "b"], "not both"),
    (["--tile-size", "45"], "tile size 45 is not valid"),
    (["--mixed-precision", "float16", "--strategy", "multi-worker"], "TF_CONFIG"),
])
def test_bad_or_contradictory_options(tmp_path, args, message):
    env_backup = os.environ.pop("TF_CONFIG", None)
    try:
        result = run("fit", *TINY_CLI, "--epochs", "1", "--output", tmp_path / "r", *args)
    finally:
        if env_backup is not None:
            os.environ["TF_CONFIG"] = env_backup
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r" / "model.keras").exists()


def test_resume_errors(tmp_path):
    assert "holds no run to resume" in run("fit", "--resume", tmp_path / "none").output
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps(TINY))
    assert "no checkpoint to resume from" in run("fit", "--resume", tmp_path / "r").output
    (tmp_path / "r" / "checkpoints").mkdir()
    (tmp_path / "r" / "checkpoints" / "last.keras").write_bytes(b"not a zip")
    result = run("fit", "--resume", tmp_path / "r")
    assert result.exit_code == 1 and "checkpoint" in result.output and "damaged" in result.output
    assert "drop --lr" in run("fit", "--resume", tmp_path / "r", "--lr", "0.1").output


def test_existing_run_is_refused(tmp_path):
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    (tmp_path / "r" / "config.json").write_text("{}")
    (tmp_path / "r" / "checkpoints" / "last.keras").write_text("a run's checkpoint")
    result = run("fit", *TINY_CLI, "--output", tmp_path / "r")
    assert result.exit_code == 1 and "--resume" in result.output and "--overwrite" in result.output


# --------------------------------------------------------------------------------------------
# Runs


def test_run_writes_checkpoints_metrics_logs_and_curves(tmp_path):
    result = run("fit", *TINY_CLI, "--epochs", "2", "--output", tmp_path / "r")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "val_pixel_error" in out and "val_iou" in out and "val_dice" in out
    assert "Best model:" in out and "curves.png" in out
    run_dir = tmp_path / "r"
    for name in ("model.keras", "config.json", "history.csv", "curves.png",
                 "checkpoints/last.keras", "checkpoints/best.keras", "checkpoints/best.json"):
        assert (run_dir / name).is_file(), name
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"loss", "val_loss", "val_pixel_error", "val_iou", "val_dice"} <= set(rows[0])
    assert 0 <= float(rows[-1]["val_pixel_error"]) <= 1
    best = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    assert best["monitor"] == "val_loss"
    assert best["value"] == pytest.approx(min(float(r["val_loss"]) for r in rows))
    events = list((run_dir / "logs").rglob("events.out.tfevents*"))
    assert any("images" in str(p) for p in events) and any("train" in str(p) for p in events)
    import cv2

    curves = cv2.imread(str(run_dir / "curves.png"))
    assert curves.shape[0] > 100 and curves.shape[1] > 500


def test_object_settings_are_calibrated_for_the_chosen_metric_with_tta(tmp_path, monkeypatch):
    import keras_unet.evaluate as evaluate
    from keras_unet.preprocess import instance_settings_of

    calls = []
    real = evaluate.calibrate_instances

    def spy(*args, **kwargs):
        calls.append(args[5:])
        best = real(*args, **kwargs)
        calls.append(best)
        return best

    monkeypatch.setattr(evaluate, "calibrate_instances", spy)
    result = run("fit", *TINY_CLI, "--epochs", "1", "--calibrate-metric", "rand",
                 "--calibrate-tta", "--output", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert calls[0] == ("rand", True)
    best = calls[1]
    assert best["rand_error"] is not None
    line = next(x for x in result.output.splitlines() if x.startswith("Objects:"))
    assert f"Rand error {best['rand_error']:.4f}" in line and "with --tta" in line
    stored = instance_settings_of(keras.models.load_model(tmp_path / "r" / "model.keras"))
    assert (stored["threshold"], stored["split_depth"], stored["min_size"]) == (
        best["threshold"], best["split_depth"], best["min_size"])
    assert json.loads((tmp_path / "r" / "config.json").read_text())["calibrate_metric"] == "rand"


def test_resume_after_sigkill_continues_with_the_optimizer_state(tmp_path):
    run_dir = tmp_path / "r"
    args = ["fit", *TINY_CLI, "--epochs", "60", "--output", run_dir]
    proc = subprocess.Popen(cli_command(*args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp_path)
    history = run_dir / "history.csv"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if history.exists() and len(history.read_text().splitlines()) >= 3:  # 2 epochs done
                break
            if proc.poll() is not None:
                pytest.fail("training ended before it could be killed")
            time.sleep(0.2)
        else:
            pytest.fail("no epoch finished in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    last = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    steps = int(last.optimizer.iterations.numpy())
    assert steps % 3 == 0 and steps >= 3  # whole epochs only (the CSV row comes first)
    done = steps // 3
    # a file being written when the kill came stays under its temporary name; the real ones load
    for path in run_dir.glob("**/*.keras"):
        if not path.name.startswith("."):
            keras.models.load_model(path)

    result = run("fit", "--resume", run_dir, "--epochs", str(done + 2))
    assert result.exit_code == 0, result.output
    assert f"Resuming at epoch {done + 1} of {done + 2} (optimizer step {steps})" in result.output
    final = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    assert int(final.optimizer.iterations.numpy()) == (done + 2) * 3
    epochs = [int(r["epoch"]) for r in csv.DictReader(history.open())]
    assert epochs == list(range(done + 2))  # one row per epoch, none lost or repeated
    assert "already finished" in run("fit", "--resume", run_dir).output
    assert not list(run_dir.glob("**/.*partial*"))  # resuming cleared the temporary files


def test_resume_with_more_epochs_trains_on_under_the_cosine_schedule(tmp_path):
    """A finished cosine run ends at learning rate 0; resumed with a larger --epochs, the rate
    follows the cosine over the new total, so the weights move again."""
    run_dir = tmp_path / "r"
    assert run("fit", *TINY_CLI, "--epochs", "2", "--output", run_dir).exit_code == 0
    before = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    assert float(before.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
    result = run("fit", "--resume", run_dir, "--epochs", "4")
    assert result.exit_code == 0, result.output
    after = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    assert int(after.optimizer.iterations.numpy()) == 4 * 3
    moved = max(float(np.max(np.abs(a - b)))
                for a, b in zip(before.get_weights(), after.get_weights()))
    assert moved > 1e-6  # before the fix: exactly 0, the extra epochs ran at rate 0
    assert float(after.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)  # ends at 0
    fewer = run("fit", "--resume", run_dir, "--epochs", "3")  # refused before any data is read
    assert fewer.exit_code == 1 and "already finished 4 of 3 epochs" in fewer.output
    assert "Read " not in fewer.output and "Resuming" not in fewer.output


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    config = TrainConfig(**{**TINY, "epochs": 4})
    data = tiny_data(config)

    class Poison(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:  # after the first checkpoint: the weights go NaN
                kernel = self.model.get_layer("logits").kernel
                kernel.assign(np.full(kernel.shape, np.nan, np.float32))

    with pytest.raises(TrainingDiverged, match="NaN at epoch 2, step 1.*last good checkpoint"):
        train(config, data, tmp_path / "r", verbose=0, callbacks=[Poison()])
    last = keras.models.load_model(tmp_path / "r" / "checkpoints" / "last.keras")
    assert all(np.all(np.isfinite(w)) for w in last.get_weights())
    assert int(last.optimizer.iterations.numpy()) == 3
    assert not (tmp_path / "r" / "model.keras").exists()


def test_a_run_that_diverges_before_its_first_checkpoint_leaves_no_folder(tmp_path):
    config = TrainConfig(**{**TINY, "epochs": 2})

    class PoisonAtOnce(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            kernel = self.model.get_layer("logits").kernel
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))

    with pytest.raises(TrainingDiverged, match="NaN at epoch 1, step 1; no epoch finished"):
        train(config, tiny_data(config), tmp_path / "r", verbose=0, callbacks=[PoisonAtOnce()])
    assert not (tmp_path / "r").exists()


def test_nan_in_an_image_is_one_line_from_the_cli(tmp_path):
    import cv2

    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    image = np.full((50, 50), np.nan, np.float32)
    import tifffile

    tifffile.imwrite(tmp_path / "img" / "a.tif", image)
    cv2.imwrite(str(tmp_path / "msk" / "a.png"), np.zeros((50, 50), np.uint8) + 255 * (np.eye(50) > 0))
    result = run("fit", *TINY_CLI, "--epochs", "1", "--images", tmp_path / "img", "--masks",
                 tmp_path / "msk", "--output", tmp_path / "r")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: a.tif: the image holds NaN or infinite values" in result.output


def test_ctrl_c_saves_the_model(tmp_path):
    config = TrainConfig(**{**TINY, "epochs": 3})

    class CtrlC(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        train(config, tiny_data(config), tmp_path / "r", verbose=0, callbacks=[CtrlC()])
    assert "--resume" in info.value.message
    assert keras.models.load_model(tmp_path / "r" / "model.keras").output_shape[-1] == 2


def test_mixed_precision_trains_and_saves_float32(tmp_path):
    config = TrainConfig(**{**TINY, "epochs": 1, "mixed_precision": "bfloat16"})
    result = train(config, tiny_data(config), tmp_path / "r", verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # restored afterwards
    saved = keras.models.load_model(result.model_path)
    assert all(w.dtype == "float32" for w in saved.weights)
    assert saved.get_layer("down0_conv1").dtype_policy.name == "float32"
    assert np.isfinite(result.history["loss"][0])


def test_jit_compiles(tmp_path):
    config = TrainConfig(**{**TINY, "epochs": 1, "jit": True})
    result = train(config, tiny_data(config), tmp_path / "r", verbose=0)
    assert np.isfinite(result.history["loss"][0])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_finish_with_equal_weights(tmp_path):
    """MultiWorkerMirroredStrategy for real: two CPU processes on 127.0.0.1, reading their tiles
    from one disk cache (one worker writes it, the other waits for it and reads it)."""
    ports = [free_port(), free_port()]
    run_dir = tmp_path / "run"
    procs = []
    for index in range(2):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CONFIG=json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }))
        args = ["fit", *TINY_CLI, "--epochs", "2", "--strategy", "multi-worker",
                "--output", run_dir, "--data-memory", "0.000001", "--cache-dir", tmp_path / "c"]
        procs.append(subprocess.Popen(cli_command(*args), env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, cwd=tmp_path))
    outputs = []
    try:  # on a slow, loaded machine a timeout must not leave a worker waiting for its peer
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            outputs.append(out)
            assert proc.returncode == 0, out[-2000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "2 replica(s): 1 tile(s) per replica, global batch 2." in outputs[0]
    said = sorted("writing them once" in out for out in outputs)
    assert said == [False, True] and all("disk cache" in out for out in outputs)
    chief = keras.models.load_model(run_dir / "model.keras")
    other = keras.models.load_model(run_dir / "worker-1" / "model.keras")
    for a, b in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    # both ran all 2 x 3 steps in lockstep, and the chief recorded the run
    last = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    assert int(last.optimizer.iterations.numpy()) == 6
    assert json.loads((run_dir / "config.json").read_text())["strategy"] == "multi-worker"


def test_mirrored_strategy_runs(tmp_path):
    """MirroredStrategy over the local devices (here one CPU) trains through the same path."""
    result = run("fit", *TINY_CLI, "--epochs", "1", "--strategy", "mirrored", "--output",
                 tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "1 replica(s): 2 tile(s) per replica, global batch 2." in result.output
    assert (tmp_path / "r" / "model.keras").is_file()


# --------------------------------------------------------------------------------------------
# Default validation split and calibration


def write_pairs(folder, n, size=48):
    """``n`` demo images and their instance masks as PNG files in folder/images, folder/masks."""
    import cv2

    images, labels = demo_data(n, size, seed=3)
    for kind in ("images", "masks"):
        (folder / kind).mkdir(parents=True)
    for i, (x, y) in enumerate(zip(images, labels)):
        cv2.imwrite(str(folder / "images" / f"{i:02d}.png"), (x[..., 0] * 255).astype(np.uint8))
        cv2.imwrite(str(folder / "masks" / f"{i:02d}.png"), y.astype(np.uint16))
    return folder / "images", folder / "masks"


@pytest.mark.parametrize("n,fraction,expected", [
    (9, None, 0.0), (10, None, 0.1), (50, None, 0.1), (50, 0.0, 0.0), (5, 0.2, 0.2)])
def test_validation_rule(n, fraction, expected):
    from keras_unet.data import split_validation
    from keras_unet.data import validation_rule

    got, why = validation_rule(n, fraction)
    assert got == expected
    if fraction is None:
        assert ("default" in why) == (expected > 0) and ("Only" in why) == (expected == 0)
    if got:
        assert len(split_validation(n, got)[1]) == max(1, round(n * got))


def test_fit_holds_out_and_calibrates_by_default(tmp_path):
    images, masks = write_pairs(tmp_path / "ten", 10)
    result = run("fit", *TINY_CLI, "--epochs", "1", "--images", images, "--masks", masks,
                 "--output", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "Holding out 1 of 10 images for validation and calibration (the default" in \
        result.output
    line = next(x for x in result.output.splitlines() if x.startswith("Objects:"))
    assert "suit the 1 validation image best" in line and "AJI" in line
    assert json.loads((tmp_path / "r" / "config.json").read_text())["calibrate"] == "auto"


def test_calibration_that_finds_no_object_keeps_the_defaults(tmp_path, monkeypatch):
    """When no setting matches a single true object (AP50 0 everywhere), there is no best one
    to store: the stated defaults stay, and the line says why."""
    import keras_unet.evaluate as evaluate
    from keras_unet.preprocess import instance_settings_of

    monkeypatch.setattr(evaluate, "calibrate_instances", lambda *a, **k: {
        "threshold": 0.2, "split_depth": 3.0, "min_size": 7, "ap50": 0.0, "map": 0.0,
        "aji": 0.01, "rand_error": None})
    images, masks = write_pairs(tmp_path / "ten", 10)
    result = run("fit", *TINY_CLI, "--epochs", "1", "--images", images, "--masks", masks,
                 "--output", tmp_path / "r")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("Objects:"))
    assert line.startswith("Objects: kept the stated defaults (threshold 0.50, neck depth 0 px")
    assert "no setting found any object of the 1 validation image (AP50 0 for all)" in line
    stored = instance_settings_of(keras.models.load_model(tmp_path / "r" / "model.keras"))
    assert (stored["threshold"], stored["split_depth"]) == (0.5, 0.0)


def test_fit_with_few_images_calibrates_on_the_training_images(tmp_path, monkeypatch):
    import keras_unet.evaluate as evaluate

    seen = []
    real = evaluate.calibrate_instances

    def spy(unet, images, instances, *args, **kwargs):
        seen.append(len(images))
        return real(unet, images, instances, *args, **kwargs)

    monkeypatch.setattr(evaluate, "calibrate_instances", spy)
    images, masks = write_pairs(tmp_path / "three", 3)
    result = run("fit", *TINY_CLI, "--epochs", "1", "--images", images, "--masks", masks,
                 "--output", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "Only 3 image(s), so none is held out for validation" in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("Objects:"))
    assert "suit the 3 training images best" in line and "flatter" in line
    assert seen == [3]


def test_calibration_off_and_old_runs_keep_their_behaviour(tmp_path):
    from keras_unet.model import build_unet
    from keras_unet.preprocess import instance_settings_of
    from keras_unet.runs import resume_config
    from keras_unet.training import _calibrate

    config = TrainConfig(**TINY, calibrate="off")
    data = tiny_data(config)
    unet = build_unet((None, None, 1), 2, 2, 2)
    said = []
    _calibrate(config, unet, None, said.append, data)
    assert said == ["Objects: kept the stated defaults (threshold 0.50, neck depth 0 px, "
                    "smallest object 0 px): --calibrate off."]
    assert instance_settings_of(unet)["threshold"] == 0.5
    # no validation images and --calibrate validation (a run recorded before --calibrate)
    said.clear()
    _calibrate(TrainConfig(**TINY, calibrate="validation"), unet, None, said.append, data)
    assert "there are no validation images" in said[0]
    # a recorded run without the setting resumes with the old behaviour
    run_dir = tmp_path / "old"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.keras").write_bytes(b"")
    recorded = TrainConfig(**TINY, val_fraction=0.0).to_dict()
    del recorded["calibrate"]
    (run_dir / "config.json").write_text(json.dumps(recorded))
    config = resume_config(run_dir)
    assert config.calibrate == "validation" and config.val_fraction == 0.0


def test_bad_calibrate_and_val_fraction_values(tmp_path):
    from cli_helpers import one_error_line

    one_error_line(run("fit", "--calibrate", "sometimes"), "sometimes")
    one_error_line(run("fit", "--val-fraction", "1.5", "--dry-run"),
                   "--val-fraction must be in [0, 1), got 1.5")
    config = json.loads(run("fit", "--dry-run").output)
    assert config["val_fraction"] is None and config["calibrate"] == "auto"


def test_a_run_records_absolute_data_paths_so_resume_works_from_anywhere(tmp_path, monkeypatch):
    from keras_unet.runs import plan_run

    monkeypatch.chdir(tmp_path)
    (tmp_path / "groups.csv").write_text("a.png,x\n")
    for folder in ("data/images", "data/masks", "val/images", "val/masks"):
        (tmp_path / folder).mkdir(parents=True)
    plan = plan_run({"images": "data/images", "masks": "data/masks", "balance": "groups.csv",
                     "val_images": "val/images", "val_masks": "val/masks"}, output="run")
    config = plan.config
    assert config.images == str(tmp_path / "data" / "images")
    assert config.masks == str(tmp_path / "data" / "masks")
    assert config.val_images == str(tmp_path / "val" / "images")
    assert config.balance == str(tmp_path / "groups.csv")
    assert plan_run({"balance": "kind"}, output="run2").config.balance == "kind"
    # a path that does not exist stays as typed, so that the error names what the user typed
    missing = plan_run({"images": "nowhere", "masks": "data/masks"}, output="run3").config
    assert missing.images == "nowhere" and missing.masks == str(tmp_path / "data" / "masks")
