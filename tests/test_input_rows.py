"""Files real users feed U-Net tools (issue 23's table, one test per row): each gives the right
answer, or one line naming the file and the fix, a non-zero exit, no traceback and no output."""

import warnings

import cv2
import numpy as np
import pytest
import tifffile

from cli_helpers import one_error_line, run

from keras_unet.data import demo_data
from keras_unet.model import build_unet
from keras_unet.predict import Predictor, predict_files, predict_instances
from keras_unet.preprocess import Normalizer, normalizer_of
from keras_unet.tiling import predict_tiled

TINY = ["--depth", "2", "--filters", "2", "--tile-size", "44", "--epochs", "1",
        "--steps-per-epoch", "2", "--batch-size", "1"]


def cells(n=2, size=48, seed=1):
    images, labels = demo_data(n, size, seed=seed)
    return (images[..., 0] * 255).astype(np.uint8), ((labels > 0) * 255).astype(np.uint8)


def folders(tmp_path, write_image, n=2, mask_suffix=".png"):
    (tmp_path / "img").mkdir(parents=True)
    (tmp_path / "msk").mkdir()
    images, masks = cells(n)
    for i in range(n):
        write_image(tmp_path / "img", f"{i}", images[i])
        cv2.imwrite(str(tmp_path / "msk" / f"{i}{mask_suffix}"), masks[i])
    return tmp_path / "img", tmp_path / "msk"


def saved(tmp_path, channels=1, normalizer=None, name="m.keras"):
    net = build_unet((None, None, channels), depth=2, filters=2, normalizer=normalizer)
    net.get_layer("logits").bias.assign([0.0, 0.05])
    net.save(tmp_path / name)
    return tmp_path / name


def mask_of(folder, stem):
    return cv2.imread(str(folder / f"{stem}_mask.png"), cv2.IMREAD_UNCHANGED)


def test_row1_rgba_pngs_fit_then_predict(tmp_path):
    def rgba(folder, stem, grey):
        cv2.imwrite(str(folder / f"{stem}.png"),
                    np.dstack([grey, grey // 2, 255 - grey, np.full_like(grey, 255)]))

    images, masks = folders(tmp_path, rgba)
    fit = run("fit", *TINY, "--images", images, "--masks", masks, "-o", tmp_path / "r")
    assert fit.exit_code == 0, fit.output
    model = tmp_path / "r" / "model.keras"
    assert normalizer_of(Predictor(model).model).channels == 3  # the alpha is not a channel
    predicted = run("predict", model, images, "-o", tmp_path / "out")
    assert predicted.exit_code == 0, predicted.output
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    for path in images.iterdir():  # the same pixels without the alpha channel
        cv2.imwrite(str(rgb / path.name), cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., :3])
    assert run("predict", model, rgb, "-o", tmp_path / "out_rgb").exit_code == 0
    for i in range(2):
        np.testing.assert_array_equal(mask_of(tmp_path / "out", i), mask_of(tmp_path / "out_rgb", i))


def test_row2_tiff_of_shape_h_w_1_is_one_image(tmp_path):
    model = saved(tmp_path)
    grey = cells(1, (45, 70))[0][0]
    tifffile.imwrite(tmp_path / "a.tif", grey[..., None])
    cv2.imwrite(str(tmp_path / "b.png"), grey)
    assert run("predict", model, tmp_path / "a.tif", tmp_path / "b.png", "-o",
               tmp_path / "out").exit_code == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["a_mask.png", "a_overlay.png", "b_mask.png", "b_overlay.png"]
    assert mask_of(tmp_path / "out", "a").shape == (45, 70)
    np.testing.assert_array_equal(mask_of(tmp_path / "out", "a"), mask_of(tmp_path / "out", "b"))


def test_row3_five_channel_tiffs_fit_then_predict(tmp_path, rng):
    def five(folder, stem, grey):
        stack = np.stack([grey, 255 - grey, grey // 2, grey // 3, grey // 4], -1).astype(np.uint16)
        tifffile.imwrite(folder / f"{stem}.tif", stack * 200)

    images, masks = folders(tmp_path, five)
    fit = run("fit", *TINY, "--images", images, "--masks", masks, "-o", tmp_path / "r")
    assert fit.exit_code == 0, fit.output
    predicted = run("predict", tmp_path / "r" / "model.keras", images / "0.tif", "-o",
                    tmp_path / "out")
    assert predicted.exit_code == 0, predicted.output
    assert mask_of(tmp_path / "out", "0").shape == (48, 48)


def test_row4_imagej_hyperstack_is_pages_of_channels(tmp_path, rng):
    stack = (rng.random((3, 2, 40, 50)) * 255).astype(np.uint8)  # Z, C, Y, X
    tifffile.imwrite(tmp_path / "h.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    one_channel = run("predict", saved(tmp_path), tmp_path / "h.tif", "-o", tmp_path / "o1")
    one_error_line(one_channel, "h.tif[0]: the model takes 1-channel images, this one has 2; save "
                                "the channel the model is for (e.g. the nuclear stain) as an image")
    assert not (tmp_path / "o1").exists()
    model = saved(tmp_path, channels=2, name="m2.keras")
    result = run("predict", model, tmp_path / "h.tif", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    masks = tifffile.imread(tmp_path / "out" / "h_mask.tif")
    assert masks.shape == (3, 40, 50)
    assert cv2.imread(str(tmp_path / "out" / "h_002_overlay.png")).shape == (40, 50, 3)
    expected = Predictor(model)(np.moveaxis(stack[1], 0, -1)).argmax(-1) * 255
    np.testing.assert_array_equal(masks[1], expected)


def nan_image(rng):
    image = rng.random((40, 44)).astype(np.float32)
    image[5, 7] = np.nan
    return image


def test_row5_nan_pixel_is_refused_by_predict(tmp_path, rng):
    tifffile.imwrite(tmp_path / "a.tif", nan_image(rng))
    one_error_line(run("predict", saved(tmp_path), tmp_path / "a.tif", "-o", tmp_path / "out"),
                   "a.tif: the image holds NaN or infinite values (1 pixel)")
    assert not (tmp_path / "out").exists()


def test_row5_nan_pixel_is_refused_by_the_saved_model(tmp_path, rng):
    from keras_unet._compat import tf
    from keras_unet.export import export_saved_model

    net = build_unet(depth=2, filters=2)
    export = export_saved_model(net, tmp_path / "exp", "unet")
    image = nan_image(rng)
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:  # TF Serving's loader
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(export))
        sig = meta.signature_def["serving_default"]
        feed = {sig.inputs["images"].name: image[None, ..., None]}
        with pytest.raises(tf.errors.InvalidArgumentError, match="holds NaN or infinite"):
            sess.run(sig.outputs["mask"].name, feed)
        clean = np.nan_to_num(image)[None, ..., None]
        assert sess.run(sig.outputs["mask"].name, {sig.inputs["images"].name: clean}).shape == \
            (1, 40, 44)
    with pytest.raises(ValueError, match="image.tif: .*holds NaN or infinite values"):
        Predictor(export)(image, "image.tif")


FIXED8 = Normalizer("fixed", 255.0, 1, "uint8", 3.0, 200.0)


def test_row6_sixteen_bit_copy_for_an_eight_bit_fixed_model(tmp_path):
    model = saved(tmp_path, normalizer=FIXED8)
    grey = cells(1, (40, 50))[0][0]
    cv2.imwrite(str(tmp_path / "a8.png"), grey)
    cv2.imwrite(str(tmp_path / "a16.png"), grey.astype(np.uint16) * 257)
    assert run("predict", model, tmp_path / "a8.png", "-o", tmp_path / "out").exit_code == 0
    one_error_line(run("predict", model, tmp_path / "a16.png", "-o", tmp_path / "out16"),
                   "a16.png: a 16-bit image (uint16), but this model was trained with "
                   "--normalization fixed")
    assert not (tmp_path / "out16").exists()


@pytest.mark.parametrize("image,message", [
    (np.full((30, 30), 0.5, np.float32), "a float image of values within 0..1"),
    (np.full((30, 30), 300.0, np.float32), "values up to 300"),
    (np.full((30, 30), 65535, np.uint16), "a 16-bit image"),
])
def test_value_range_refusals(image, message):
    with pytest.raises(ValueError, match=message):
        FIXED8.check(image, "x")
    per_image = Normalizer("image", 255.0, 1, "uint8", 3.0, 200.0)
    assert per_image.check(image, "x") == []  # per-image statistics: the range does not matter
    assert Normalizer("fixed", 255.0).check(image, "x") == []  # an old model: nothing recorded


def test_value_range_warning_and_graph_refusal(tmp_path):
    bright = np.full((30, 30), 250, np.uint8)
    assert FIXED8.check(bright, "b.png") == []  # within the training range
    dim_model = Normalizer("fixed", 255.0, 1, "uint8", 0.0, 100.0)
    (line,) = dim_model.check(bright, "b.png")
    assert line.startswith("b.png: values up to 250, more than twice")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dim_model(bright, "b.png")
    assert [str(w.message) for w in caught] == [line]
    from keras_unet.export import export_saved_model

    net = build_unet(depth=2, filters=2, normalizer=FIXED8)
    predictor = Predictor(export_saved_model(net, tmp_path / "exp", "unet"))
    with pytest.raises(ValueError, match="d.tif: a 16-bit image"):  # checked before the graph
        predictor(np.full((30, 30), 9, np.uint16), "d.tif")
    predictor.contract = Normalizer("fixed", 255.0, 1)  # no local check: the graph's own
    with pytest.raises(ValueError, match="c.tif: values above 255, but this model was trained"):
        predictor(np.full((30, 30), 999.0, np.float32), "c.tif")


def test_row7_jpeg_masks(tmp_path):
    images, masks = folders(tmp_path, lambda f, s, g: cv2.imwrite(str(f / f"{s}.png"), g),
                            mask_suffix=".jpg")
    one_error_line(run("weight-map", masks / "0.jpg", "-o", tmp_path / "w" / "w"),
                   "msk/0.jpg is a JPEG with")
    assert not (tmp_path / "w").exists()
    one_error_line(run("fit", *TINY, "--images", images, "--masks", masks, "-o", tmp_path / "r"),
                   "msk/0.jpg is a JPEG with")
    one_error_line(run("evaluate", saved(tmp_path), "--images", images, "--masks", masks),
                   "msk/0.jpg is a JPEG with")


def test_row7_grey_masks_in_weight_map_and_evaluate_name_the_mask(tmp_path, rng):
    images, masks = folders(tmp_path, lambda f, s, g: cv2.imwrite(str(f / f"{s}.png"), g))
    cv2.imwrite(str(masks / "1.png"), (rng.random((48, 48)) * 200).astype(np.uint8))
    one_error_line(run("weight-map", masks / "1.png", "-o", tmp_path / "w" / "w"),
                   "msk/1.png looks like an image, not a mask")
    one_error_line(run("evaluate", saved(tmp_path), "--images", images, "--masks", masks),
                   "msk/1.png looks like an image, not a mask")


def test_naming_val_masks_and_the_odd_file(tmp_path, rng):
    def png(folder, stem, grey):
        cv2.imwrite(str(folder / f"{stem}.png"), grey)

    images, masks = folders(tmp_path / "train", png)
    val_images, val_masks = folders(tmp_path / "val", png)
    cv2.imwrite(str(val_masks / "1.png"), (rng.random((48, 48)) * 200).astype(np.uint8))
    one_error_line(run("fit", *TINY, "--images", images, "--masks", masks, "--val-images",
                       val_images, "--val-masks", val_masks, "-o", tmp_path / "r"),
                   "check --val-masks")
    (images / "1.png").unlink()  # grey joins RGB (see test_data), but 2 channels join nothing
    tifffile.imwrite(images / "1.tif", np.zeros((48, 48, 2), np.uint8), metadata={"axes": "YXC"})
    result = run("fit", *TINY, "--images", images, "--masks", masks, "-o", tmp_path / "r")
    one_error_line(result, "the images mix channel counts: 1.tif has 2, the other 1 have 1")


def test_row8_large_png_goes_blockwise_by_memory(tmp_path, monkeypatch):
    from keras_unet import lazyio

    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.zeros((6000, 6000), np.uint8))  # 36 megapixels, header only
    reason, pixels = lazyio.blockwise_reason(big, None, 2, instances=True)
    assert pixels == 36_000_000 and "GiB" in reason
    assert lazyio.blockwise_reason(big, None, 2, instances=False, overlay=False)[0] is None
    # the same rule on a small PNG with a small budget: block-wise, right size in the log
    model = saved(tmp_path)
    grey = cells(1, (70, 90))[0][0]
    cv2.imwrite(str(tmp_path / "c.png"), grey)
    assert run("predict", model, tmp_path / "c.png", "-o", tmp_path / "whole").exit_code == 0
    monkeypatch.setattr(lazyio, "WHOLE_IMAGE_BYTES", 1000)
    result = run("predict", model, tmp_path / "c.png", "-o", tmp_path / "blocks")
    assert result.exit_code == 0, result.output
    assert "c.png: 90x70 px (0.0 megapixels) predicted block-wise (whole, it would take" in \
        result.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "blocks" / "c_mask.tif"),
                                  mask_of(tmp_path / "whole", "c"))


def test_row8_blockwise_log_gives_the_megapixels(tmp_path):
    model = saved(tmp_path)
    cv2.imwrite(str(tmp_path / "d.png"), cells(1, (1000, 1300))[0][0])
    result = run("predict", model, tmp_path / "d.png", "-o", tmp_path / "out", "--blockwise")
    assert result.exit_code == 0, result.output
    assert "d.png: 1300x1000 px (1.3 megapixels) predicted block-wise (asked for)" in result.output


def test_row10_python_api_takes_raw_images_or_names_the_function(tmp_path, rng):
    net = build_unet(depth=2, filters=2, normalizer=Normalizer("image", 65535.0))
    raw = (rng.random((40, 44)) * 60000).astype(np.uint16)
    with pytest.raises(ValueError, match=r"predict_tiled takes the network input.*"
                                         r"keras_unet.Predictor\(model\)\(image\)"):
        predict_tiled(net, raw)
    expected = predict_tiled(net, normalizer_of(net)(raw))
    np.testing.assert_allclose(Predictor(net)(raw), expected, atol=1e-6)
    labels = predict_instances(net, raw)
    assert labels.shape == (40, 44)
    report = predict_files(net, [_write(tmp_path / "r.tif", raw)], tmp_path / "out",
                           save_probabilities=True)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "r_probabilities.npy"), expected,
                               atol=1e-6)
    assert not report.failed


def _write(path, image):
    tifffile.imwrite(path, image)
    return path


def test_nan_found_mid_way_blockwise_leaves_no_half_written_output(tmp_path, rng):
    from keras_unet.large import predict_large

    image = rng.random((300, 200)).astype(np.float32)
    image[280, 10] = np.inf  # in the last strip, after others were written
    tifffile.imwrite(tmp_path / "a.tif", image)
    net = build_unet(depth=2, filters=2)
    with pytest.raises(ValueError, match="a.tif: the image holds NaN or infinite values"):
        predict_large(net, tmp_path / "a.tif", tmp_path / "out", tile_size=44,
                      strip_pixels=2000, instances={"threshold": 0.5}, probabilities=True)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("bad", ["nan", "size"])
def test_fit_refuses_a_bad_image_before_any_weight_map(tmp_path, rng, bad):
    """A NaN image or a mask of another size, last in the folder, is refused before the weight
    maps of the images before it are computed (data.md: 'checked before any work')."""
    from keras_unet.config import TrainConfig
    from keras_unet.prepare import load_training_data

    for kind in ("images", "masks"):
        (tmp_path / kind).mkdir()
    for i in range(3):
        image = rng.random((40, 48)).astype(np.float32)
        mask = (image > 0.5).astype(np.uint8) * 255
        if i == 2 and bad == "nan":
            image[5, 5] = np.nan
        if i == 2 and bad == "size":
            mask = mask[:30]
        tifffile.imwrite(tmp_path / "images" / f"{i}.tif", image)
        tifffile.imwrite(tmp_path / "masks" / f"{i}.tif", mask)
    lines = []
    config = TrainConfig(images=str(tmp_path / "images"), masks=str(tmp_path / "masks"),
                         depth=2, tile_size=44).validate()
    message = "2.tif: the image holds NaN" if bad == "nan" else "2.tif: image is 48x40 but its mask"
    with pytest.raises(ValueError, match=message):
        load_training_data(config, lines.append, data_memory=1)
    assert not any(line.startswith("Data:") for line in lines), lines


def test_mixed_bit_depths_say_what_to_convert_to():
    from keras_unet.config import TrainConfig
    from keras_unet.prepare import normalizer_for

    images = [np.zeros((8, 8), np.uint16)] * 2 + [np.zeros((8, 8), np.uint8)]
    with pytest.raises(ValueError, match=r"the images mix bit depths \(dtypes\): c.png has uint8, "
                       r"the other 2 have uint16; convert it to uint16 \(8-bit values x 257 "
                       r"are exact\)"):
        normalizer_for(images, TrainConfig(), ["a.tif", "b.tif", "c.png"])


def test_grey_images_join_rgb_ones_as_three_equal_channels(rng):
    from keras_unet.config import TrainConfig
    from keras_unet.prepare import normalizer_for

    grey, rgb = rng.integers(0, 255, (8, 8), np.uint8), rng.integers(0, 255, (8, 8, 3), np.uint8)
    contract = normalizer_for([grey, rgb, grey[..., None]], TrainConfig(), ["a", "b", "c"])
    assert contract.channels == 3
    as_rgb = contract.channels_of(grey[..., None])
    assert as_rgb.shape == (8, 8, 3) and all(np.array_equal(as_rgb[..., c], grey) for c in range(3))
    # the same network input as the grey image stored as RGB
    np.testing.assert_array_equal(contract(grey), contract(np.repeat(grey[..., None], 3, 2)))
    with pytest.raises(ValueError, match="mix channel counts"):
        normalizer_for([grey, rng.integers(0, 255, (8, 8, 2), np.uint8)], TrainConfig(), ["a", "b"])
    with pytest.raises(ValueError, match="the model takes 3-channel images, this one has 2"):
        contract.channels_of(rng.integers(0, 255, (8, 8, 2), np.uint8))
