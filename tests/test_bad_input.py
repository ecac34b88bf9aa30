"""Bad input across the commands: one line naming the file or option, a non-zero exit, no
traceback, and nothing left behind (no new folder, no earlier output changed)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli_helpers import one_error_line, run

from keras_unet.data import demo_data

TINY = ["--depth", "2", "--filters", "2", "--tile-size", "44", "--epochs", "1",
        "--steps-per-epoch", "2", "--batch-size", "1"]


def write_pairs(tmp, n=2, size=48, masks=None):
    images, labels = demo_data(n, size, seed=1)
    (tmp / "img").mkdir(exist_ok=True)
    (tmp / "msk").mkdir(exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(tmp / "img" / f"{i}.png"), (images[i, ..., 0] * 255).astype(np.uint8))
        mask = labels[i].astype(np.uint16) if masks is None else masks(i, labels[i])
        cv2.imwrite(str(tmp / "msk" / f"{i}.png"), mask)
    return tmp / "img", tmp / "msk"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from keras_unet.model import build_unet

    path = tmp_path_factory.mktemp("model") / "m.keras"
    build_unet(depth=2, filters=2).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# fit: silent cases that are now refused


def test_empty_masks_are_refused(tmp_path):
    images, masks = write_pairs(tmp_path, masks=lambda i, lab: np.zeros_like(lab, np.uint8))
    result = run("fit", *TINY, "--images", images, "--masks", masks, "-o", tmp_path / "r")
    one_error_line(result, "every mask is empty")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("option, message", [
    (["--hed-jitter", "0.2"], "--hed-jitter needs RGB images (3 channels); these have 1"),
    (["--greyscale", "0.5"], "--greyscale needs colour images; these have 1 channel"),
    (["--channel-shuffle"], "--channel-shuffle needs colour images; these have 1 channel")])
def test_colour_options_on_grey_images_are_refused_before_any_work(tmp_path, option, message):
    images, masks = write_pairs(tmp_path)
    result = run("fit", *TINY, *option, "--images", images, "--masks", masks, "-o", tmp_path / "r")
    one_error_line(result, message)
    assert "weight maps" not in result.output and "Data:" not in result.output
    assert not (tmp_path / "r").exists()


def test_one_pixel_image_is_refused(tmp_path):
    images, masks = write_pairs(tmp_path)
    cv2.imwrite(str(images / "tiny.png"), np.full((1, 1), 9, np.uint8))
    cv2.imwrite(str(masks / "tiny.png"), np.full((1, 1), 255, np.uint8))
    result = run("fit", *TINY, "--images", images, "--masks", masks, "-o", tmp_path / "r")
    one_error_line(result, "tiny.png is 1x1 px; training images must be at least 16 px")
    assert not (tmp_path / "r").exists()


def test_duplicate_stems_are_refused_naming_both(tmp_path):
    images, masks = write_pairs(tmp_path)
    cv2.imwrite(str(images / "0.tif"), np.zeros((48, 48), np.uint8))
    result = run("fit", *TINY, "--images", images, "--masks", masks, "-o", tmp_path / "r")
    one_error_line(result, "share the name '0'")
    assert "0.png" in result.output and "0.tif" in result.output


def test_masks_folder_is_the_images_folder(tmp_path):
    images, _ = write_pairs(tmp_path)
    result = run("fit", *TINY, "--images", images, "--masks", images, "-o", tmp_path / "r")
    one_error_line(result, "--images and --masks are the same folder")


def test_photographs_as_masks_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    images, masks = write_pairs(
        tmp_path, masks=lambda i, lab: rng.integers(0, 200, lab.shape).astype(np.uint8))
    result = run("fit", *TINY, "--images", images, "--masks", masks, "-o", tmp_path / "r")
    one_error_line(result, "looks like an image, not a mask")


def test_instance_mask_with_holes_and_gaps_in_ids_works(tmp_path):
    def holes(i, lab):
        out = (lab * 7).astype(np.uint16)  # ids 7, 14, 21, ...: not consecutive
        out[20:23, 20:23] = 0  # a hole
        return out
    images, masks = write_pairs(tmp_path, masks=holes)
    result = run("fit", *TINY, "--images", images, "--masks", masks, "--mask-type", "instance",
                 "-o", tmp_path / "r")
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------------------------
# fit: numbers, dead runs, output folders


@pytest.mark.parametrize("option,value,message", [
    ("--lr", "inf", "--lr must be a finite number"),
    ("--lr", "nan", "--lr must be a finite number"),
    ("--momentum", "1.5", "--momentum must be in [0, 1)"),
    ("--depth", "20", "--depth must be an integer from 1 to 8"),
    ("--filters", "5000", "--filters must be an integer from 1 to 1024"),
    ("--batch-size", "0", "--batch-size must be an integer from 1"),
    ("--epochs", "0", "--epochs must be an integer from 1"),
    ("--sigma", "0", "--sigma must be > 0 px"),
    ("--w0", "-1", "--w0 must be >= 0"),
    ("--seed", "-1", "--seed must be an integer from 0 to 4294967295"),
    ("--seed", "4294967296", "--seed must be an integer from 0 to 4294967295"),
    ("--border-width", "-1", "--border-width must be an integer from 0 to 16"),
    ("--elastic-sigma", "inf", "--elastic-sigma must be a finite number"),
    ("--rotation", "400", "--rotation must be at most 180"),
    ("--hed-jitter", "2", "--hed-jitter must be a number from 0 to 0.999"),
])
def test_numbers_are_checked_before_any_work(tmp_path, option, value, message):
    """The error names the option as typed (--batch-size, not the setting's key batch_size)."""
    result = run("fit", "--depth", "2", "--tile-size", "44", option, value, "-o", tmp_path / "r")
    one_error_line(result, message)
    assert not (tmp_path / "r").exists()


def test_config_file_numbers_are_checked(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"lr": float("inf")}))
    one_error_line(run("fit", "--config", tmp_path / "c.json", "--depth", "2", "--tile-size",
                       "44"), "Error: lr must be a finite number, got inf (in ")  # the file's key


def test_a_dead_run_can_be_taken_over(tmp_path):
    """A run that ended before its first checkpoint (config, history and logs only)."""
    dead = tmp_path / "r"
    (dead / "logs").mkdir(parents=True)
    (dead / "config.json").write_text("{}")
    (dead / "history.csv").write_text("epoch,loss\n")
    resumed = run("fit", "--resume", dead)
    one_error_line(resumed, "start it again with the same command and --output")
    again = run("fit", *TINY, "-o", dead)
    assert again.exit_code == 0, again.output
    assert (dead / "model.keras").is_file()


def test_read_only_output_is_refused_before_reading_data(tmp_path, monkeypatch):
    import keras_unet.files as files

    read_only = tmp_path / "ro"
    read_only.mkdir()
    monkeypatch.setattr(files.os, "access", lambda path, mode: Path(path) != read_only)
    result = run("fit", *TINY, "--images", tmp_path / "missing", "--masks", tmp_path / "missing",
                 "-o", read_only / "run")
    one_error_line(result, "cannot be written")  # not "images folder ... does not exist"
    assert not (read_only / "run").exists()


def test_fit_output_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    one_error_line(run("fit", *TINY, "-o", tmp_path / "f" / "run"), "is a file, not a folder")


# ---------------------------------------------------------------------------------------------
# predict


def test_predict_batch_size_zero_is_checked_up_front(tmp_path, model_file):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((30, 30), np.uint8))
    result = run("predict", model_file, image, "-o", tmp_path / "out", "--batch-size", "0")
    one_error_line(result, "--batch-size must be an integer from 1")
    assert not (tmp_path / "out").exists()


def test_rgb_image_to_grey_model_leaves_no_folder(tmp_path, model_file):
    image = tmp_path / "rgb.png"
    colour = np.dstack([np.zeros((30, 30), np.uint8), np.full((30, 30), 80, np.uint8),
                        np.full((30, 30), 200, np.uint8)])
    cv2.imwrite(str(image), colour)
    result = run("predict", model_file, image, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "takes 1-channel images" in result.output
    assert "it is colour. Give one channel" in result.output
    assert "Nothing written: the input failed" in result.output
    assert "Wrote masks" not in result.output
    assert not (tmp_path / "out").exists()


def test_predict_keeps_earlier_output(tmp_path, model_file):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old_mask.png").write_bytes(b"earlier")
    image = tmp_path / "broken.png"
    image.write_bytes(b"not a png")
    result = run("predict", model_file, image, "-o", out)
    assert result.exit_code == 1 and "broken.png" in result.output
    assert (out / "old_mask.png").read_bytes() == b"earlier" and len(list(out.iterdir())) == 1


def test_corrupt_model_file(tmp_path):
    broken = tmp_path / "m.keras"
    broken.write_bytes(b"PK but not really")
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((30, 30), np.uint8))
    one_error_line(run("predict", broken, image, "-o", tmp_path / "out"),
                   "is not a Keras model file")
    assert not (tmp_path / "out").exists()


def test_predict_server_closed_port_respects_the_timeout(tmp_path):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((30, 30), np.uint8))
    start = time.monotonic()
    result = run("predict", "--server", "http://127.0.0.1:9", "--model", "unet", image,
                 "-o", tmp_path / "out", "--timeout", "3")
    assert time.monotonic() - start <= 4
    one_error_line(result, "cannot reach TF Serving at http://127.0.0.1:9")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option,value,message", [
    ("--threshold", "1.5", "--threshold must be in [0, 1)"),
    ("--threshold", "nan", "--threshold must be in [0, 1)"),
    ("--min-size", "-3", "--min-size must be >= 0 px, got -3"),
    ("--border-width", "99", "--border-width must be an integer from 0 to 16 px, got 99"),
    ("--split-depth", "-1", "--split-depth must be >= 0 px"),
    ("--tile-size", "35", "tile size 35 is not valid"),
])
def test_predict_instance_options(tmp_path, model_file, option, value, message):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((30, 30), np.uint8))
    one_error_line(run("predict", model_file, image, "-o", tmp_path / "out", "--instances",
                       option, value), message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options", [["--threshold", "0.05"], ["--min-size", "3", "--watershed"]])
def test_object_options_without_instances_are_refused(tmp_path, model_file, options):
    """Without --instances no objects are cut, so these options would change nothing."""
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((30, 30), np.uint8))
    named = [o for o in options if o.startswith("--")]
    verb = "sets" if len(named) == 1 else "set"
    one_error_line(run("predict", model_file, image, "-o", tmp_path / "out", *options),
                   f"{', '.join(named)} {verb} how objects are cut: add --instances")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# evaluate


@pytest.mark.parametrize("case,message", [
    ("missing model", "does not exist"),
    ("missing masks", "masks folder"),
    ("unmatched", "masks without an image: extra"),
    ("batch zero", "--batch-size must be an integer from 1"),
    ("bad tile", "tile size 35 is not valid"),
    ("threshold", "--threshold must be in [0, 1)"),
    ("class mask", "a class mask for 2 classes may hold 0..1"),
])
def test_evaluate_bad_input(tmp_path, model_file, case, message):
    images, masks = write_pairs(tmp_path)
    args = ["evaluate", model_file, "--images", images, "--masks", masks]
    if case == "missing model":
        args[1] = tmp_path / "none.keras"
    elif case == "missing masks":
        args[5] = tmp_path / "nothing"
    elif case == "unmatched":
        cv2.imwrite(str(masks / "extra.png"), np.zeros((48, 48), np.uint8))
    elif case == "batch zero":
        args += ["--batch-size", "0"]
    elif case == "bad tile":
        args += ["--tile-size", "35"]
    elif case == "threshold":
        args += ["--threshold", "2"]
    elif case == "class mask":
        cv2.imwrite(str(masks / "0.png"), np.full((48, 48), 3, np.uint8))
        args += ["--mask-type", "class"]
    one_error_line(run(*args), message)


# ---------------------------------------------------------------------------------------------
# export


@pytest.mark.parametrize("extra,message", [
    (["--version", "0"], "--version must be a positive integer"),
    (["--name", "a/b"], "model name 'a/b' must use letters"),
    (["--batch-size", "0"], "--batch-size must be an integer from 1"),
    (["--tile-size", "35"], "--tile-size 35 is not valid"),
])
def test_export_bad_options(tmp_path, model_file, extra, message):
    one_error_line(run("export", model_file, "-o", tmp_path / "exp", *extra), message)
    assert not (tmp_path / "exp").exists()


def test_export_output_is_a_file(tmp_path, model_file):
    (tmp_path / "file").write_text("x")
    one_error_line(run("export", model_file, "-o", tmp_path / "file"), "is a file, not a folder")
    assert (tmp_path / "file").read_text() == "x"


def test_export_model_is_a_folder(tmp_path):
    one_error_line(run("export", tmp_path, "-o", tmp_path / "exp"), "is not a .keras model file")


def test_export_corrupt_model(tmp_path):
    broken = tmp_path / "m.keras"
    broken.write_bytes(b"\x00" * 100)
    one_error_line(run("export", broken, "-o", tmp_path / "exp"), "is not a Keras model file")
    assert not (tmp_path / "exp").exists()


# ---------------------------------------------------------------------------------------------
# weight-map


@pytest.mark.parametrize("case,message", [
    ("missing", "does not exist"),
    ("not an image", "cannot read mask"),
    ("sigma", "--sigma must be a positive number of pixels, got 0.0"),
    ("w0", "--w0 must be a finite number >= 0, got -2.0"),
    ("w0 inf", "--w0 must be a finite number >= 0, got inf"),
    ("colour", "expected a 2-D single-channel mask"),
    ("output under a file", "is a file, not a folder"),
])
def test_weight_map_bad_input(tmp_path, case, message):
    mask = tmp_path / "m.png"
    cv2.imwrite(str(mask), np.where(np.arange(40 * 40).reshape(40, 40) % 7 > 2, 255, 0)
                .astype(np.uint8))
    args = ["weight-map", mask, "-o", tmp_path / "out" / "w"]
    if case == "missing":
        args[1] = tmp_path / "none.png"
    elif case == "not an image":
        mask.write_bytes(b"garbage")
    elif case == "sigma":
        args += ["--sigma", "0"]
    elif case == "w0":
        args += ["--w0", "-2"]
    elif case == "w0 inf":
        args += ["--w0", "inf"]
    elif case == "colour":
        cv2.imwrite(str(mask), np.dstack([np.zeros((9, 9), np.uint8), np.ones((9, 9), np.uint8),
                                          np.full((9, 9), 2, np.uint8)]))
    elif case == "output under a file":
        (tmp_path / "blocker").write_text("x")
        args[3] = tmp_path / "blocker" / "w"
    one_error_line(run(*args), message)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# serving-status


@pytest.mark.parametrize("server,extra,message", [
    ("http://127.0.0.1:9", [], "cannot reach TF Serving"),
    ("localhost:8501", [], "--server must be a URL like http://localhost:8501"),
    ("ftp://localhost", [], "--server must be a URL"),
    ("http://127.0.0.1:9", ["--version", "0"], "--version must be a positive integer"),
])
def test_serving_status_bad_input(server, extra, message):
    start = time.monotonic()
    one_error_line(run("serving-status", "--server", server, "--model", "unet", "--timeout", "3",
                       *extra), message)
    assert time.monotonic() - start <= 4


def test_serving_status_bad_model_name():
    one_error_line(run("serving-status", "--server", "http://127.0.0.1:9", "--model", "a/b"),
                   "--model must be a model name")


# ---------------------------------------------------------------------------------------------
# the console


def test_fit_prints_no_tensorflow_log_lines(tmp_path):
    """A real process: TensorFlow's C++ start-up lines and banners are hidden by default."""
    command = Path(sys.executable).with_name("keras-unet")
    if not command.exists():
        pytest.skip("keras-unet is not installed as a command")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                          "KERAS_UNET_VERBOSE")}
    proc = subprocess.run([str(command), "fit", *TINY, "-o", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout + proc.stderr
    noise = [line for line in text.splitlines()
             if line[:5] in ("E0000", "I0000", "W0000") or "oneDNN" in line or "cuda" in
             line.lower() or "absl::InitializeLog" in line]
    assert not noise, noise
    assert "Model saved to" in text
    verbose = subprocess.run([str(command), "--verbose", "fit", "--dry-run"], capture_output=True,
                             text=True, env=env, cwd=tmp_path, timeout=120)
    assert verbose.returncode == 0


def test_help_answers_without_tensorflow_from_the_installed_command():
    command = Path(sys.executable).with_name("keras-unet")
    if not command.exists():
        pytest.skip("keras-unet is not installed as a command")
    proc = subprocess.run([sys.executable, "-X", "importtime", str(command), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "predict" in proc.stdout
    assert "tensorflow" not in proc.stderr  # the import-time report names every module loaded


def test_stderr_redirected_to_a_file(tmp_path, model_file):
    """The console filter keeps stderr usable when it is a regular file (a seekable one)."""
    command = Path(sys.executable).with_name("keras-unet")
    if not command.exists():
        pytest.skip("keras-unet is not installed as a command")
    images, masks = write_pairs(tmp_path)
    with open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.run([str(command), "evaluate", str(model_file), "--images", str(images),
                               "--masks", str(masks), "--json"], stdout=subprocess.PIPE,
                              stderr=err, text=True, timeout=300)
    assert proc.returncode == 0, (tmp_path / "err.txt").read_text()
    assert "pixel_error" in json.loads(proc.stdout)["mean"]
    text = (tmp_path / "err.txt").read_text()
    assert "Evaluating" in text and "I0000" not in text


@pytest.mark.parametrize("text,message", [
    ("file,group\n0.png\n", "groups.csv, line 2: expected 'file name,group', got '0.png'"),
    ("0.png,a,b\n", "groups.csv, line 1: expected 'file name,group'"),
    ("0.png,\n", "groups.csv, line 1"),
    ("0.png,a\n0.png,b\n", "groups.csv, line 2: 0.png is given a group twice"),
    ("0.png,a\n", "gives no group for 1.png"),
    ("0.png,a\n1.png,a\nnine.png,b\n", "names nine.png, which is not among the images"),
])
def test_evaluate_bad_groups(tmp_path, model_file, text, message):
    images, masks = write_pairs(tmp_path)
    (tmp_path / "groups.csv").write_text(text)
    result = run("evaluate", model_file, "--images", images, "--masks", masks, "--groups",
                 tmp_path / "groups.csv")
    one_error_line(result, message)
