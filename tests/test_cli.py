import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from keras_unet.cli import main

TINY = ["--depth", "2", "--filters", "4", "--tile-size", "34", "--epochs", "1",
        "--steps-per-epoch", "2", "--batch-size", "1"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("fit", "export", "weight-map", "predict nuclei IMAGE --instances"):
        assert command in result.output


def test_fit_on_demo_data_then_export(tmp_path):
    run_dir, exports = tmp_path / "run", tmp_path / "exported"
    result = run("fit", *TINY, "--output", run_dir, "--export", "unet", "--export-dir", exports)
    assert result.exit_code == 0, result.output
    assert "built-in demo data" in result.output
    assert ("Warning: 34px tiles leave a 18px output at depth 2, so each step learns from only "
            "18x18 labelled pixels per tile; --tile-size 48 or more gives at least 32 px."
            in result.output)  # tiny tiles are allowed, with a warning
    assert (run_dir / "model.keras").is_file()
    assert (run_dir / "history.csv").read_text().startswith("epoch")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["depth"] == 2 and config["tile_size"] == 34
    assert f"SavedModel exported to {exports / 'unet' / '1'}" in result.output
    assert (exports / "unet" / "1" / "saved_model.pb").is_file()

    assert config["input_scale"] == 1.0  # the demo images are float in [0, 1]

    # a second fit into the same run directory is refused unless --overwrite
    again = run("fit", *TINY, "--output", run_dir)
    assert again.exit_code == 1
    assert "holds another run" in again.output and "Traceback" not in again.output
    stamp = (run_dir / "model.keras").stat().st_mtime_ns
    replaced = run("fit", *TINY, "--output", run_dir, "--overwrite", "--seed", "3")
    assert replaced.exit_code == 0, replaced.output
    assert (run_dir / "model.keras").stat().st_mtime_ns != stamp
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 3

    exported = run("export", run_dir / "model.keras", "--name", "unet", "--output", exports)
    assert exported.exit_code == 0 and "unet/2" in exported.output
    clash = run("export", run_dir / "model.keras", "--output", exports, "--version", "1")
    assert clash.exit_code == 1 and "already exists" in clash.output


def test_fit_from_folders(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        image = rng.integers(0, 255, (30, 40), np.uint8)
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), image)
        cv2.imwrite(str(tmp_path / "msk" / f"{i}.png"), np.where(image > 128, 255, 0).astype(np.uint8))
    result = run("fit", *TINY, "--images", tmp_path / "img", "--masks", tmp_path / "msk",
                 "--output", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "Read 2 image/mask pairs" in result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["input_scale"] == 255.0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--tile-size", "35"], "tile size 35 is not valid"),
        (["--images", "nowhere", "--masks", "nowhere"], "images folder nowhere does not exist"),
        (["--images", "x"], "give both --images and --masks"),
        (["--lr", "0"], "lr must be > 0"),
    ],
)
def test_fit_bad_input_is_one_line(tmp_path, args, message):
    result = run("fit", "--depth", "2", "--tile-size", "34", "--output", tmp_path / "r", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "model.keras").exists()


def test_export_bad_model_path(tmp_path):
    result = run("export", tmp_path / "missing.keras")
    assert result.exit_code == 1 and "is not a .keras model file" in result.output
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"garbage")
    result = run("export", broken, "--output", tmp_path / "out")
    assert result.exit_code == 1 and "cannot load" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("saved_model.pb"))


def test_weight_map_command(tmp_path):
    mask = np.full((40, 41), 255, np.uint8)
    mask[:, 20] = 0  # a membrane between two cells
    path = tmp_path / "mask.png"
    cv2.imwrite(str(path), mask)
    result = run("weight-map", path, "--output", tmp_path / "w")
    assert result.exit_code == 0, result.output
    assert "2 objects; weights min" in result.output
    w = np.load(tmp_path / "w.npy")
    assert w.shape == (40, 41) and np.argmax(w.max(axis=0)) == 20
    picture = cv2.imread(str(tmp_path / "w.png"))
    assert picture.shape[0] == 40 and picture.shape[1] > 41
    # the membrane column is the brightest part of the picture
    assert picture[:, 20].sum() > picture[:, 10].sum()


def test_weight_map_command_shows_the_map_fit_trains_on(tmp_path):
    """With no options, the command draws exactly the weight map fit computes with its defaults."""
    from keras_unet.config import TrainConfig
    from keras_unet.prepare import prepare_training_set

    mask = np.zeros((48, 48), np.uint16)
    mask[8:24, 8:24], mask[8:24, 24:40], mask[30:44, 10:20] = 1, 2, 3  # two touching, one apart
    path = tmp_path / "mask.png"
    cv2.imwrite(str(path), mask)
    result = run("weight-map", path, "--output", tmp_path / "w")
    assert result.exit_code == 0, result.output
    image = np.zeros((48, 48), np.uint8)
    trained = prepare_training_set([image], [mask], TrainConfig()).weights[0]
    np.testing.assert_allclose(np.load(tmp_path / "w.npy"), trained, rtol=1e-6)


def test_weight_map_bad_input(tmp_path):
    result = run("weight-map", tmp_path / "none.png", "-o", tmp_path / "w")
    assert result.exit_code == 1 and "does not exist" in result.output
    cv2.imwrite(str(tmp_path / "m.png"), np.zeros((5, 5), np.uint8))
    result = run("weight-map", tmp_path / "m.png", "-o", tmp_path / "w", "--sigma", "-2")
    assert result.exit_code == 1 and "sigma must be a positive" in result.output


def test_predict_and_evaluate(tmp_path):
    import tifffile

    from keras_unet.data import demo_data
    from keras_unet.model import build_unet

    model = tmp_path / "m.keras"
    build_unet(depth=2, filters=2).save(model)
    images, labels = demo_data(2, (45, 70), seed=1)
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), (images[i, ..., 0] * 255).astype(np.uint8))
        cv2.imwrite(str(tmp_path / "msk" / f"{i}.png"), labels[i].astype(np.uint16))
    tifffile.imwrite(tmp_path / "stack.tif", (images[:, ..., 0] * 255).astype(np.uint8))
    (tmp_path / "bad.png").write_bytes(b"not an image")

    result = run("predict", model, tmp_path / "img", tmp_path / "stack.tif", tmp_path / "bad.png",
                 "--output", tmp_path / "out", "--save-probabilities")
    assert result.exit_code == 1  # one bad file: reported, the others still predicted
    assert "bad.png: not an image" in result.output
    assert "Wrote masks of 3 of 4 inputs" in result.output
    for i in range(2):
        mask = cv2.imread(str(tmp_path / "out" / f"{i}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (45, 70) and set(np.unique(mask)) <= {0, 255}
        assert np.load(tmp_path / "out" / f"{i}_probabilities.npy").shape == (45, 70, 2)
        assert (tmp_path / "out" / f"{i}_overlay.png").is_file()
    assert tifffile.imread(tmp_path / "out" / "stack_mask.tif").shape == (2, 45, 70)

    result = run("evaluate", model, "--images", tmp_path / "img", "--masks", tmp_path / "msk", "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output[result.output.index("{"):])
    assert [r["image"] for r in scores["images"]] == ["0.png", "1.png"]
    assert 0 <= scores["mean"]["pixel_error"] <= 1 and "rand_error" in scores["mean"]

    result = run("predict", model, tmp_path / "img", "-o", tmp_path / "o2", "--tile-size", "35")
    assert result.exit_code == 1 and "tile size 35 is not valid" in result.output


def write_pair(folder, name, image, mask):
    (folder / "img").mkdir(exist_ok=True)
    (folder / "msk").mkdir(exist_ok=True)
    if image is not None:
        cv2.imwrite(str(folder / "img" / f"{name}.png"), image)
    if mask is not None:
        cv2.imwrite(str(folder / "msk" / f"{name}.png"), mask)


def binary(h=40, w=40):
    mask = np.zeros((h, w), np.uint8)
    mask[5:20, 5:20] = 255
    return mask


def grey(h=40, w=40):
    return np.random.default_rng(0).integers(0, 255, (h, w), np.uint8)


def case_unmatched(tmp):
    write_pair(tmp, "a", grey(), binary())
    write_pair(tmp, "b", grey(), None)
    write_pair(tmp, "c", None, binary())
    return "images without a mask: b; masks without an image: c"


def case_size_mismatch(tmp):
    write_pair(tmp, "a", grey(40, 40), binary(40, 41))
    return "a.png: image is 40x40 but its mask is 41x40"


def case_unreadable(tmp):
    write_pair(tmp, "a", grey(), binary())
    (tmp / "img" / "b.png").write_bytes(b"this is not a png")
    write_pair(tmp, "b", None, binary())
    return "cannot read image"


def case_empty(tmp):
    (tmp / "img").mkdir()
    (tmp / "msk").mkdir()
    return "images folder"


def case_mask_values(tmp):
    mask = binary()
    mask[30:, 30:] = 7
    write_pair(tmp, "a", grey(), mask)
    return "a.png: a binary mask must hold 0 and one other value, found [0, 7, 255]"


def case_3d(tmp):
    import tifffile

    write_pair(tmp, "a", None, binary())
    (tmp / "img").mkdir(exist_ok=True)
    tifffile.imwrite(tmp / "img" / "a.tif", np.zeros((5, 40, 40, 2), np.uint8))
    return "which holds channels and which pages is unclear; give --axes"


@pytest.mark.parametrize("case", [case_unmatched, case_size_mismatch, case_unreadable, case_empty,
                                  case_mask_values, case_3d])
def test_fit_bad_data_is_one_line(tmp_path, case):
    message = case(tmp_path)
    extra = ["--mask-type", "binary"] if case is case_mask_values else []
    result = run("fit", *TINY, "--images", tmp_path / "img", "--masks", tmp_path / "msk",
                 "--output", tmp_path / "r", *extra)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r" / "model.keras").exists()


def test_evaluate_says_a_size_mismatch_as_fit_does(tmp_path):
    from keras_unet.model import build_unet

    build_unet(depth=2, filters=2).save(tmp_path / "m.keras")
    message = case_size_mismatch(tmp_path)
    result = run("evaluate", tmp_path / "m.keras", "--images", tmp_path / "img", "--masks",
                 tmp_path / "msk")
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert message + " (width x height; " in errors[0] and "they must match" in errors[0]


def test_evaluate_per_group_from_a_csv_or_sub_folders(tmp_path):
    from keras_unet.data import demo_data
    from keras_unet.model import build_unet

    model = tmp_path / "m.keras"
    build_unet(depth=2, filters=2, border_width=1).save(model)
    images, labels = demo_data(3, (48, 60), seed=2)
    groups = {0: "a", 1: "a", 2: "b"}
    for i in range(3):
        image, mask = (images[i, ..., 0] * 255).astype(np.uint8), labels[i].astype(np.uint16)
        for img, msk in (("img", "msk"), (f"gimg/{groups[i]}", f"gmsk/{groups[i]}")):
            for folder, array in ((img, image), (msk, mask)):
                (tmp_path / folder).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(tmp_path / folder / f"{i}.png"), array)
    (tmp_path / "groups.csv").write_text("file,group\n0.png,a\n1,a\n\n2.png,b\n")
    result = run("evaluate", model, "--images", tmp_path / "img", "--masks", tmp_path / "msk",
                 "--groups", tmp_path / "groups.csv", "--json", "--threshold", "0.45")
    assert result.exit_code == 0, result.output
    by_csv = json.loads(result.output[result.output.index("{"):])
    assert sorted(by_csv["groups"]) == ["a", "b"]
    a, b = by_csv["groups"]["a"], by_csv["groups"]["b"]
    assert (a["images"], b["images"]) == (2, 1)
    rows = by_csv["images"]
    assert [r["group"] for r in rows] == ["a", "a", "b"]
    assert b["n_true"] == rows[2]["n_true"] and b["aji"] == pytest.approx(rows[2]["aji"])
    assert b["ap50"] == pytest.approx(rows[2]["ap50"])
    assert a["n_true"] == rows[0]["n_true"] + rows[1]["n_true"] > 0
    assert a["aji"] == pytest.approx((rows[0]["aji"] + rows[1]["aji"]) / 2)
    for key in ("ap50", "map", "aji", "n_pred", "merges"):
        assert key in a
    assert by_csv["instances"]["n_true"] == a["n_true"] + b["n_true"]
    # the same groups as sub-folders
    result = run("evaluate", model, "--images", tmp_path / "gimg", "--masks", tmp_path / "gmsk",
                 "--json", "--threshold", "0.45")
    assert result.exit_code == 0, result.output
    by_folder = json.loads(result.output[result.output.index("{"):])
    assert by_folder["groups"] == by_csv["groups"]
    assert [r["image"] for r in by_folder["images"]] == ["a/0.png", "a/1.png", "b/2.png"]
    text = run("evaluate", model, "--images", tmp_path / "gimg", "--masks", tmp_path / "gmsk",
               "--threshold", "0.45").output
    assert "group a (2 images): AP50" in text and "AJI" in text


def test_the_summary_counts_objects_per_image_or_in_all():
    from pathlib import Path

    from keras_unet.outputs import PredictReport

    few = PredictReport(Path("out"), 2, objects=[("a.tif", 3), ("b.png", 0)])
    assert few.summary == "Wrote masks of 2 of 2 inputs to out; objects: a.tif 3, b.png 0"
    many = PredictReport(Path("out"), 12, objects=[(f"{i}.png", i) for i in range(12)])
    assert many.summary.endswith("; 66 objects in 12 images (0 to 11 per image)")
    assert PredictReport(Path("out"), 1).summary == "Wrote masks of 1 of 1 inputs to out"
