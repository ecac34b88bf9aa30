"""keras_unet.large: strip-by-strip prediction equals whole-image prediction; seams are joined."""

import numpy as np
import pytest
import tifffile
import zarr
from click.testing import CliRunner

from keras_unet.cli import main
from keras_unet.data import demo_data
from keras_unet.instances import label_instances
from keras_unet.large import _StripLabeller, open_source, predict_large
from keras_unet.model import build_unet
from keras_unet.preprocess import Normalizer, normalizer_of
from keras_unet.tiling import predict_tiled


@pytest.fixture(scope="module")
def unet():
    import keras

    keras.utils.set_random_seed(3)
    return build_unet(depth=2, filters=4, border_width=1)


def cells(shape, seed=0):
    return (demo_data(1, shape, seed=seed)[0][0, ..., 0] * 255).astype(np.uint8)


def same_up_to_renumbering(a, b):
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return (len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1])))


@pytest.mark.parametrize("shape,strip", [((300, 220), 20_000), ((97, 413), 5_000)])
def test_blockwise_equals_predict_tiled(tmp_path, unet, shape, strip):
    image = cells(shape)
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(64, 64))
    settings = {"threshold": 0.5, "min_size": 3, "border_width": 1, "split_depth": 1.0}
    report = predict_large(unet, tmp_path / "big.tif", tmp_path / "out", tile_size=36,
                           batch_size=3, instances=settings, probabilities=True,
                           strip_pixels=strip)
    probs = predict_tiled(unet, normalizer_of(unet)(image), 36)
    with tifffile.TiffFile(report.outputs["mask"]) as tif:
        assert tif.pages[0].is_tiled and tif.pages[0].tilewidth == 256
        mask = tif.asarray()
    np.testing.assert_array_equal(mask, probs.argmax(-1).astype(np.uint8) * 255)
    stored = tifffile.imread(report.outputs["probabilities"]).astype(int)
    assert np.abs(stored - np.round(probs[..., 1] * 255)).max() <= 1
    labels = tifffile.imread(report.outputs["instances"])
    whole = label_instances(probs, **settings)
    assert labels.shape == shape and report.objects == whole.max()
    np.testing.assert_array_equal(labels, whole)
    assert not list((tmp_path / "out").glob(".*partial*"))


def touching_blobs(shape, seed):
    """Object probabilities of pairs of overlapping disks (necks to cut), single disks, a few
    diagonal neighbours and tall objects that cross several strips."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    fg = np.zeros(shape, bool)
    for _ in range(shape[0] * shape[1] // 700):
        y, x, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(4, 9)
        fg |= (yy - y) ** 2 + (xx - x) ** 2 < r * r
        if rng.random() < 0.5:  # a second nucleus overlapping the first: a neck
            dy, dx = rng.normal(0, 1, 2)
            d = rng.uniform(1.2, 1.7) * r / max(np.hypot(dy, dx), 1e-3)
            fg |= (yy - y - dy * d) ** 2 + (xx - x - dx * d) ** 2 < r * r
    fg[20:140, 30:36] = True  # a tall bar with a bulge: across every seam
    fg |= (yy - 80) ** 2 + (xx - 45) ** 2 < 100
    probs = np.zeros(shape + (2,), np.float32)
    probs[..., 1] = np.where(fg, 0.9, 0.1) + rng.uniform(-0.05, 0.05, shape)
    probs[..., 0] = 1 - probs[..., 1]
    return probs


@pytest.mark.parametrize("rows,seed", [(16, 0), (23, 1), (300, 2)])
def test_blockwise_objects_equal_whole_image_ones_with_the_neck_cut(tmp_path, monkeypatch, rows,
                                                                    seed):
    """Strips of ``rows`` rows and windows of 64 rows (TIFF_TILE 16): every object that a seam
    or a window border crosses is still cut at its necks as on the whole image, and the ids are
    the same."""
    import keras_unet.large as large

    monkeypatch.setattr(large, "TIFF_TILE", 16)
    probs = touching_blobs((230, 170), seed)
    settings = {"threshold": 0.5, "min_size": 12, "border_width": 1, "split_depth": 1.5}
    whole = label_instances(probs, **settings)
    assert whole.max() > label_instances(probs, **{**settings, "split_depth": 0.0}).max() + 5
    labeller = _StripLabeller(tmp_path / "t.zarr", probs.shape[:2], settings)
    for y0 in range(0, probs.shape[0], rows):
        labeller.add(y0, probs[y0:y0 + rows, :, 1] > settings["threshold"])
    assert labeller.finish(tmp_path / "l.tif", "tiff") == whole.max()
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "l.tif"), whole)
    assert not list(tmp_path.glob("*pieces*"))


def test_the_neck_cut_of_an_object_ignores_objects_beyond_its_smoothing():
    from keras_unet.instances import split_at_necks

    probs = touching_blobs((120, 120), 5)
    labels = label_instances(probs, 0.5, 12, 0)
    alone = np.where(labels == labels[80, 33], labels, 0)
    cut_alone = split_at_necks(alone, 1.5)
    cut_all = split_at_necks(labels, 1.5)
    inside = alone > 0
    assert len(np.unique(cut_alone[inside])) >= 2  # the bar with its bulge is cut
    pairs = np.unique(np.stack([cut_alone[inside], cut_all[inside]]), axis=1)
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def test_per_image_statistics_are_streamed_exactly(tmp_path, unet):
    image = (cells((150, 130), seed=4).astype(np.uint16) * 40)
    tifffile.imwrite(tmp_path / "a.tif", image)
    from keras_unet.lazyio import streamed_stats

    offset, divisor = streamed_stats(open_source(tmp_path / "a.tif"), Normalizer("image", 65535.0), 16)
    expected = Normalizer("image", 65535.0).stats(image[..., None])
    assert offset == pytest.approx(expected[0], rel=1e-6)
    assert divisor == pytest.approx(expected[1], rel=1e-6)


def test_an_object_across_seams_keeps_one_id(tmp_path):
    """A snake that crosses three strip borders and touches nothing else."""
    probs = np.zeros((60, 40, 2), np.float32)
    probs[..., 0] = 1
    probs[5:55, 10:13, 1] = 1  # a vertical bar through every strip
    probs[50:53, 13:30, 1] = 1  # with a foot in the last strip
    probs[2:4, 30:35, 1] = 1  # a second object
    probs[..., 0] -= probs[..., 1]
    labeller = _StripLabeller(tmp_path / "t.zarr", (60, 40), {"min_size": 0, "border_width": 0})
    for y0 in range(0, 60, 16):
        labeller.add(y0, probs[y0:y0 + 16, :, 1] > 0.5)
    assert labeller.finish(tmp_path / "labels.tif", "tiff") == 2
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert len(np.unique(labels[5:55, 10:13])) == 1 and labels[51, 20] == labels[30, 11]
    assert labels[3, 31] not in (0, labels[30, 11])


def test_small_objects_are_judged_by_their_whole_size(tmp_path):
    probs = np.zeros((40, 10, 2), np.float32)
    probs[18:22, 4:6, 1] = 1  # 8 px, cut in two by the seam at row 20
    probs[..., 0] = 1 - probs[..., 1]
    labeller = _StripLabeller(tmp_path / "t.zarr", (40, 10), {"min_size": 6, "border_width": 0})
    labeller.add(0, probs[:20, :, 1] > 0.5)
    labeller.add(20, probs[20:, :, 1] > 0.5)
    assert labeller.finish(tmp_path / "l.tif", "tiff") == 1  # 4 + 4 px: kept as one 8 px object


def test_zarr_in_zarr_out(tmp_path, unet):
    image = cells((120, 90), seed=2)
    array = zarr.open(str(tmp_path / "in.zarr"), mode="w", shape=image.shape, chunks=(32, 32),
                      dtype=np.uint8)
    array[:] = image
    report = predict_large(unet, tmp_path / "in.zarr", tmp_path / "out", tile_size=36,
                           strip_pixels=3000)
    assert report.outputs["mask"].name == "in_mask.zarr"
    mask = zarr.open(str(report.outputs["mask"]), mode="r")[:]
    expected = predict_tiled(unet, normalizer_of(unet)(image), 36).argmax(-1) * 255
    np.testing.assert_array_equal(mask, expected.astype(np.uint8))
    # the command line takes a .zarr folder as one image and writes zarr beside it
    unet.save(tmp_path / "m.keras")
    done = CliRunner().invoke(main, ["predict", str(tmp_path / "m.keras"), str(tmp_path / "in.zarr"),
                                     "-o", str(tmp_path / "cli"), "--tile-size", "36"])
    assert done.exit_code == 0 and "predicted block-wise" in done.output, done.output
    np.testing.assert_array_equal(zarr.open(str(tmp_path / "cli" / "in_mask.zarr"), mode="r")[:],
                                  expected.astype(np.uint8))


def test_cli_blockwise_matches_the_usual_path(tmp_path, unet):
    import cv2

    unet.save(tmp_path / "m.keras")
    image = cells((130, 170), seed=5)
    tifffile.imwrite(tmp_path / "img.tif", image, tile=(64, 64))
    cv2.imwrite(str(tmp_path / "img.png"), image)
    runner = CliRunner()
    done = runner.invoke(main, ["predict", str(tmp_path / "m.keras"), str(tmp_path / "img.tif"),
                                "-o", str(tmp_path / "a"), "--blockwise", "--instances"])
    assert done.exit_code == 0, done.output
    assert "predicted block-wise" in done.output
    usual = runner.invoke(main, ["predict", str(tmp_path / "m.keras"), str(tmp_path / "img.png"),
                                 "-o", str(tmp_path / "b"), "--instances"])
    assert usual.exit_code == 0, usual.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a" / "img_mask.tif"),
                                  cv2.imread(str(tmp_path / "b" / "img_mask.png"), 0))
    assert same_up_to_renumbering(tifffile.imread(tmp_path / "a" / "img_instances.tif"),
                                  tifffile.imread(tmp_path / "b" / "img_instances.tif"))


def test_3000_by_2000_equals_predict_tiled(tmp_path, unet):
    """The issue's case: masks bit for bit, instances up to renumbering, many strips."""
    image = np.tile(cells((500, 500), seed=6), (6, 4))  # 3000 x 2000
    tifffile.imwrite(tmp_path / "wide.tif", image, tile=(256, 256))
    settings = {"threshold": 0.5, "min_size": 3, "border_width": 1, "fill_holes": False}
    report = predict_large(unet, tmp_path / "wide.tif", tmp_path / "out", batch_size=4,
                           instances=settings, strip_pixels=500_000)
    probs = predict_tiled(unet, normalizer_of(unet)(image), batch_size=4)
    mask = tifffile.imread(report.outputs["mask"])
    assert mask.shape == (3000, 2000)
    np.testing.assert_array_equal(mask, probs.argmax(-1).astype(np.uint8) * 255)
    assert same_up_to_renumbering(tifffile.imread(report.outputs["instances"]),
                                  label_instances(probs, **settings))
