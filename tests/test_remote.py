"""keras_unet.remote and the one reader: fit, evaluate, predict and predict --server take the same
pixels from the same file; the REST client imports no TensorFlow."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from keras_unet.cli import main
from keras_unet.config import TrainConfig
from keras_unet.evaluate import evaluate_files
from keras_unet.model import build_unet
from keras_unet.predict import predict_files
from keras_unet.prepare import load_training_data
from keras_unet.preprocess import Normalizer
from keras_unet.remote import predict_files_remote
from test_images import CASES, write_case


class FakeClient:
    """Stands for a ServingClient: records the pixels each request carries, answers zeros."""

    model_url = "http://fake/v1/models/unet"

    def __init__(self):
        self.seen = []

    def predict_png(self, pngs):
        answers = []
        for data in pngs:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            self.seen.append(image[..., None] if image.ndim == 2 else image[..., ::-1])
            answers.append(cv2.imencode(".png", np.zeros(image.shape[:2], np.uint8))[1].tobytes())
        return answers

    def predict(self, body):
        images = np.asarray(body["inputs"]["images"], np.float32)
        self.seen.append(images[0])
        return {"outputs": {"mask": np.zeros(images.shape[:3], int).tolist(),
                            "probabilities": np.zeros(images.shape[:3] + (2,)).tolist()}}


def pairs_for(tmp_path, path, pages):
    """Images and masks as fit and evaluate take them: folders for one page, stacks for more."""
    mask = np.zeros(pages.shape[:3], np.uint8)
    mask[:, 4:12, 5:15] = 255
    if len(pages) > 1:
        tifffile.imwrite(tmp_path / "masks.tif", mask)
        return path, tmp_path / "masks.tif"
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    path.rename(tmp_path / "img" / path.name)
    cv2.imwrite(str(tmp_path / "msk" / "a.png"), mask[0])
    return tmp_path / "img", tmp_path / "msk"


@pytest.mark.parametrize("case", CASES)
def test_fit_evaluate_predict_and_server_take_the_same_pixels(tmp_path, rng, monkeypatch, case):
    path, expected = write_case(tmp_path, case, rng)
    images, masks = pairs_for(tmp_path, path, expected)
    path = images if images.is_file() else images / path.name
    seen = []
    check = Normalizer.check
    monkeypatch.setattr(Normalizer, "check", lambda self, image, name="image": (
        seen.append(np.array(image)), check(self, image, name))[1])

    def taken():
        pages = list(seen)
        seen.clear()
        return pages

    load_training_data(TrainConfig(images=str(images), masks=str(masks), depth=2))
    by_command = {"fit": taken()}
    net = build_unet((None, None, expected.shape[3]), depth=2, filters=2)
    evaluate_files(net, images, masks)
    by_command["evaluate"] = taken()
    report = predict_files(net, [path], tmp_path / "out", overlay=False)
    assert not report.failed, report.failed
    by_command["predict"] = taken()
    client = FakeClient()
    report = predict_files_remote(client, [path], tmp_path / "remote", overlay=False)
    assert not report.failed, report.failed
    by_command["predict --server"] = client.seen
    for command, pages in by_command.items():
        assert len(pages) == len(expected), command
        if command == "fit":  # fit prepares its images on several threads, in any order
            pages = sorted(pages, key=lambda p: p.tobytes())
            expected_pages = sorted(expected, key=lambda p: p.tobytes())
        else:
            expected_pages = list(expected)
        for page, want in zip(pages, expected_pages):
            assert page.shape == want.shape, command
            np.testing.assert_array_equal(page, want, err_msg=command)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two exports (1 and 2 channels) in the stand-in TF Serving, and their .keras files."""
    from keras_unet.export import export_saved_model
    from tfserving_fake import FakeServing

    from keras_unet._compat import keras

    base = tmp_path_factory.mktemp("served")
    servers, models = {}, {}
    keras.utils.set_random_seed(3)  # weights whose masks hold both classes on these images
    for channels in (1, 2):
        net = build_unet((None, None, channels), depth=2, filters=4)
        models[channels] = base / f"m{channels}.keras"
        net.save(models[channels])
        export_saved_model(net, base / f"exp{channels}", "unet")
        servers[channels] = FakeServing("unet", base / f"exp{channels}" / "unet").__enter__()
    yield servers, models
    for server in servers.values():
        server.__exit__(None, None, None)


@pytest.mark.parametrize("case,channels", [("png8", 1), ("png16", 1), ("tiff_hw1", 1),
                                           ("stack_zyx", 1), ("imagej_zcyx", 2)])
def test_predict_server_gives_the_local_mask(tmp_path, rng, served, case, channels):
    servers, models = served
    path, expected = write_case(tmp_path, case, rng)
    runner = CliRunner()
    local = runner.invoke(main, ["predict", str(models[channels]), str(path), "-o",
                                 str(tmp_path / "local"), "--no-overlay"])
    remote = runner.invoke(main, ["predict", "--server", servers[channels].url, "--model", "unet",
                                  str(path), "-o", str(tmp_path / "remote"), "--no-overlay"])
    assert local.exit_code == 0 and remote.exit_code == 0, local.output + remote.output
    name = "a_mask.png" if len(expected) == 1 else "a_mask.tif"
    read = (lambda p: cv2.imread(str(p), cv2.IMREAD_UNCHANGED)) if len(expected) == 1 \
        else tifffile.imread
    local_mask, remote_mask = read(tmp_path / "local" / name), read(tmp_path / "remote" / name)
    assert local_mask.shape == expected.shape[:3] if len(expected) > 1 else expected.shape[1:3]
    np.testing.assert_array_equal(remote_mask, local_mask)
    assert 0 < np.count_nonzero(local_mask) < local_mask.size  # both classes: the test can fail


def test_predict_server_imports_no_tensorflow(tmp_path):
    """Row 9: the REST client path starts without TensorFlow (a fresh process)."""
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((30, 30), np.uint8))
    code = ("import sys\nfrom keras_unet.cli import main\n"
            "try:\n    main(['predict', '--server', 'http://127.0.0.1:9', '--model', 'unet', "
            f"{str(tmp_path / 'a.png')!r}, '-o', {str(tmp_path / 'out')!r}])\n"
            "except SystemExit as exc:\n    print('EXIT', exc.code)\n"
            "print('TF LOADED' if 'tensorflow' in sys.modules or 'keras' in sys.modules "
            "else 'NO TF')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert "cannot reach TF Serving at http://127.0.0.1:9" in proc.stderr, proc.stderr
    assert proc.stdout.split()[-2:] == ["NO", "TF"], proc.stdout + proc.stderr
    assert "EXIT 1" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_predict_server_refuses_what_predict_refuses(tmp_path, rng):
    """The served model's own refusals (16-bit data or a 0..1 float image for a model trained on
    8-bit images under fixed normalisation) and the client's (NaN) come back as one line each."""
    from cli_helpers import one_error_line
    from keras_unet.export import export_saved_model
    from tfserving_fake import FakeServing

    net = build_unet(depth=2, filters=2, normalizer=Normalizer("fixed", 255.0, 1, "uint8", 0, 250))
    export_saved_model(net, tmp_path / "exp", "unet")
    grey = (rng.random((30, 40)) * 250).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a16.png"), grey.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "a8.png"), grey)
    nan = grey.astype(np.float32)
    nan[3, 4] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan)
    tifffile.imwrite(tmp_path / "unit.tif", grey.astype(np.float32) / 255)
    runner = CliRunner()
    with FakeServing("unet", tmp_path / "exp" / "unet") as server:
        def served(name):
            return runner.invoke(main, ["predict", "--server", server.url, "--model", "unet",
                                        str(tmp_path / name), "-o", str(tmp_path / name[:-4])])

        assert served("a8.png").exit_code == 0
        one_error_line(served("a16.png"), "a PNG of another bit depth than 8, but this model "
                                          "was trained with --normalization fixed")
        one_error_line(served("nan.tif"), "nan.tif: the image holds NaN or infinite values")
        one_error_line(served("unit.tif"), "a float image of values within 0..1, but this model")
    assert not any((tmp_path / name).exists() for name in ("a16", "nan", "unit"))
