"""fit --balance: the kind of an image, the groups of a CSV, and how often each image is drawn
(keras_unet.balance), with the tiles that keras_unet.data draws."""

import json

import cv2
import numpy as np
import pytest

from keras_unet.balance import check_draws, draw_probabilities, image_groups
from keras_unet.config import TrainConfig
from keras_unet.data import TrainingSet, training_dataset
from keras_unet.model import Geometry
from keras_unet.preprocess import image_kind


def blobs(rng, size=128, n=12, radius=8):
    """A boolean mask of ``n`` discs."""
    mask = np.zeros((size, size), bool)
    yy, xx = np.mgrid[:size, :size]
    for y, x in rng.integers(radius, size - radius, (n, 2)):
        mask |= (yy - y) ** 2 + (xx - x) ** 2 < radius ** 2
    return mask


@pytest.fixture
def nuclei():
    return blobs(np.random.default_rng(0))


def noisy(values, rng):
    return np.clip(values + rng.normal(0, 3, values.shape), 0, 255).astype(np.uint8)


def test_image_kinds(nuclei):
    rng = np.random.default_rng(1)
    fluorescence = noisy(np.where(nuclei, 180.0, 15.0), rng)
    brightfield = noisy(np.where(nuclei, 60.0, 220.0), rng)
    he = np.stack([np.where(nuclei, v_n, v_b) for v_n, v_b in ((90, 235), (60, 190),
                                                                  (150, 225))], -1)
    he = noisy(he.astype(float), rng)
    assert image_kind(fluorescence) == "grey, dark background"
    assert image_kind(np.repeat(fluorescence[..., None], 3, -1)) == "grey, dark background"
    assert image_kind(fluorescence.astype(np.uint16) * 257) == "grey, dark background"
    assert image_kind(brightfield) == "grey, bright background"
    assert image_kind(he) == "colour, bright background"
    assert image_kind(255 - he) == "colour, dark background"
    with pytest.raises(ValueError, match="image_kind takes"):
        image_kind(np.zeros((2, 3, 4, 5)))


def test_square_root_draws_have_the_known_answer():
    probs, line = draw_probabilities(["a"] * 4 + ["b"])
    # shares sqrt(4) : sqrt(1) = 2 : 1, so a's four images get 2/3 and b's one 1/3
    np.testing.assert_allclose(probs, [1 / 6] * 4 + [1 / 3])
    assert "a: 4 images, 67 % of the tiles (80 % if drawn alike)" in line
    assert "b: 1 image, 33 % of the tiles (20 % if drawn alike)" in line
    assert draw_probabilities(["a", "a", "a"]) == (
        None, "All 3 training images are of one group (a); each is drawn alike.")


def test_groups_from_a_csv(tmp_path):
    table = tmp_path / "groups.csv"
    table.write_text("file,group\n1.png,stained\n2,fluorescence\n3.png,fluorescence\n")
    images = [np.zeros((8, 8), np.uint8)] * 3
    assert image_groups(str(table), images, ["1.png", "2.png", "3.png"]) == [
        "stained", "fluorescence", "fluorescence"]
    assert image_groups("none", images, ["1.png", "2.png", "3.png"]) is None
    with pytest.raises(ValueError, match="gives no group for 4.png; add a line '4.png,GROUP'"):
        image_groups(str(table), images, ["1.png", "2.png", "4.png"])
    with pytest.raises(ValueError, match="names 3.png, which is not among the images in imgs"):
        image_groups(str(table), images[:2], ["1.png", "2.png"], "imgs")
    table.write_text("1.png,stained\n2.pgn,fluorescence\n3.png,fluorescence\n")
    with pytest.raises(ValueError, match=r"gives no group for 2.png; add a line '2.png,GROUP' "
                       r"\(it names 2.pgn, which is not among the images: a misspelling of "
                       r"2.png\?\)"):
        image_groups(str(table), images, ["1.png", "2.png", "3.png"])
    with pytest.raises(FileNotFoundError, match="missing.csv: no such file; give a CSV"):
        image_groups(str(tmp_path / "missing.csv"), images, ["1.png"])


@pytest.mark.parametrize("draws", [[0.5, 0.6], [1.0], [0.5, 0.5, 0.0], [np.nan, 1.0]])
def test_bad_draws(draws):
    with pytest.raises(ValueError, match="probabilities > 0 that sum to 1"):
        check_draws(draws, 2 if len(draws) != 3 else 3)


def test_tiles_are_drawn_as_often_as_the_draws_say():
    geometry = Geometry(1, "valid")
    images = [np.full((20, 20, 1), float(i), np.float32) for i in range(3)]
    labels = [np.zeros((20, 20), np.uint8)] * 3
    weights = [np.ones((20, 20), np.float32)] * 3
    draws = [0.6, 0.3, 0.1]
    data = TrainingSet(images, labels, weights, draws=draws)
    n = 1500
    tiles = training_dataset(data, geometry, 12, batch_size=1, seed=4).take(n)
    picked = np.array([int(round(float(b["image"].numpy().mean()))) for b in tiles])
    counts = np.bincount(picked, minlength=3) / n
    # binomial standard deviation at n = 1500 is at most 0.013; allow four of them
    np.testing.assert_allclose(counts, draws, atol=0.05)
    alike = training_dataset(TrainingSet(images, labels, weights), geometry, 12, seed=4).take(n)
    counts = np.bincount([int(round(float(b["image"].numpy().mean()))) for b in alike],
                         minlength=3) / n
    np.testing.assert_allclose(counts, [1 / 3] * 3, atol=0.05)


def test_balance_is_validated():
    assert TrainConfig(balance="kind").validate().balance == "kind"
    assert TrainConfig(balance="groups.CSV").validate().balance == "groups.CSV"
    with pytest.raises(ValueError, match="balance must be none, kind or a .csv file.*'kinds'; "
                       "did you mean kind[?]"):
        TrainConfig(balance="kinds").validate()
    with pytest.raises(ValueError, match="got 'groups.txt'$"):  # nothing close: no guess
        TrainConfig(balance="groups.txt").validate()


def test_fit_balance_kind_says_what_it_draws(tmp_path, nuclei):
    from click.testing import CliRunner

    from keras_unet.cli import main

    rng = np.random.default_rng(2)
    for kind in ("images", "masks"):
        (tmp_path / kind).mkdir()
    for i in range(3):
        grey = noisy(np.where(nuclei, 180.0, 15.0), rng)
        cv2.imwrite(str(tmp_path / "images" / f"f{i}.png"), np.repeat(grey[..., None], 3, -1))
        cv2.imwrite(str(tmp_path / "masks" / f"f{i}.png"), nuclei.astype(np.uint8) * 255)
    colour = np.stack([np.where(nuclei, 150.0, 225.0), np.where(nuclei, 60.0, 190.0),
                       np.where(nuclei, 90.0, 235.0)], -1)  # BGR for OpenCV
    cv2.imwrite(str(tmp_path / "images" / "he.png"), noisy(colour, rng))
    cv2.imwrite(str(tmp_path / "masks" / "he.png"), nuclei.astype(np.uint8) * 255)
    args = ["fit", "--depth", "2", "--filters", "4", "--tile-size", "34", "--epochs", "1",
            "--steps-per-epoch", "2", "--batch-size", "1", "--calibrate", "off",
            "--images", tmp_path / "images", "--masks", tmp_path / "masks"]
    result = CliRunner().invoke(main, [str(a) for a in args + [
        "--balance", "kind", "--output", tmp_path / "run"]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert ("grey, dark background: 3 images, 63 % of the tiles (75 % if drawn alike); "
            "colour, bright background: 1 image, 37 % of the tiles (25 % if drawn alike)."
            in result.output)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["balance"] == "kind"
    bad = CliRunner().invoke(main, [str(a) for a in args + [
        "--balance", tmp_path / "missing.csv", "--output", tmp_path / "bad"]],
        catch_exceptions=False)
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.output.strip().splitlines()[-1].startswith("Error: ")
    assert "missing.csv: no such file; give a CSV of 'file name,group' rows" in bad.output
    assert not (tmp_path / "bad" / "model.keras").exists()
