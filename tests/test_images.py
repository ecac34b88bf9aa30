"""keras_unet.images / keras_unet.axes: the one reader, its axes, alpha and mask rules, and the
same pixels in fit, evaluate, predict and predict --server."""

import cv2
import numpy as np
import pytest
import tifffile

from keras_unet.axes import check_axes, image_layout
from keras_unet.images import read_image, read_mask, read_pages, read_stack

H, W = 20, 30


def pixels(rng, shape, dtype=np.uint8):
    top = np.iinfo(dtype).max if np.dtype(dtype).kind in "ui" else 1.0
    return (rng.random(shape) * top).astype(dtype)


def write_case(folder, case, rng):
    """A file of one kind and the ``(pages, H, W, C)`` pixels a reader must give for it."""
    if case == "png8":
        a = pixels(rng, (H, W))
        cv2.imwrite(str(folder / "a.png"), a)
        return folder / "a.png", a[None, ..., None]
    if case == "png16":
        a = pixels(rng, (H, W), np.uint16)
        cv2.imwrite(str(folder / "a.png"), a)
        return folder / "a.png", a[None, ..., None]
    if case == "rgba":  # constant alpha: dropped
        rgb = pixels(rng, (H, W, 3))
        cv2.imwrite(str(folder / "a.png"), np.dstack([rgb[..., ::-1], np.full((H, W), 255,
                                                                            np.uint8)]))
        return folder / "a.png", rgb[None]
    if case == "tiff_hw1":
        a = pixels(rng, (H, W, 1))
        tifffile.imwrite(folder / "a.tif", a)
        return folder / "a.tif", a[None]
    if case == "tiff_hw5":
        a = pixels(rng, (H, W, 5), np.uint16)
        tifffile.imwrite(folder / "a.tif", a)
        return folder / "a.tif", a[None]
    if case == "imagej_zcyx":
        a = pixels(rng, (3, 2, H, W))
        tifffile.imwrite(folder / "a.tif", a, imagej=True, metadata={"axes": "ZCYX"})
        return folder / "a.tif", np.moveaxis(a, 1, -1)
    if case == "ome_zcyx":
        a = pixels(rng, (3, 2, H, W), np.uint16)
        tifffile.imwrite(folder / "a.tif", a, ome=True, metadata={"axes": "ZCYX"})
        return folder / "a.tif", np.moveaxis(a, 1, -1)
    if case == "stack_zyx":  # tifffile writes (3, H, W) as planar RGB: a guess, read as pages
        a = pixels(rng, (3, H, W))
        tifffile.imwrite(folder / "a.tif", a)
        return folder / "a.tif", a[..., None]
    raise AssertionError(case)


CASES = ["png8", "png16", "rgba", "tiff_hw1", "tiff_hw5", "imagej_zcyx", "ome_zcyx", "stack_zyx"]


@pytest.mark.parametrize("case", CASES)
def test_axes_come_from_the_file(tmp_path, rng, case):
    path, expected = write_case(tmp_path, case, rng)
    stack = read_stack(path)
    assert stack.dtype == expected.dtype
    np.testing.assert_array_equal(stack, expected)
    layout = image_layout(path)  # the header alone says the same
    assert (layout.pages, layout.height, layout.width, layout.channels) == expected.shape
    assert [p.shape for p in read_pages(path)] == [expected.shape[1:]] * len(expected)


def test_axes_option_settles_the_layout(tmp_path, rng):
    a = pixels(rng, (2, H, W))  # two channels first, written without axes: read as two pages
    tifffile.imwrite(tmp_path / "c.tif", a)
    assert read_stack(tmp_path / "c.tif").shape == (2, H, W, 1)
    np.testing.assert_array_equal(read_image(tmp_path / "c.tif", axes="cyx"), np.moveaxis(a, 0, -1))
    with pytest.raises(ValueError, match=r"is stored with 3 axes, shape \(2, 20, 30\).*"
                                         r"--axes YX names 2"):
        read_stack(tmp_path / "c.tif", axes="YX")


@pytest.mark.parametrize("axes,message", [
    ("YXQ", "unknown: Q"),
    ("YC", "has no X"),
    ("YXCC", "names C twice"),
    ("", "use one letter per axis"),
])
def test_axes_option_is_checked(axes, message):
    with pytest.raises(ValueError, match=message):
        check_axes(axes)


def test_an_ambiguous_layout_is_refused_naming_the_axes(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((5, 40, 40, 2), np.uint8))
    with pytest.raises(ValueError, match=r"a.tif: shape \(5, 40, 40, 2\) with axes QQYX; 2 axes "
                                         r"are unnamed.*give --axes, e.g. --axes ZCYX"):
        read_stack(tmp_path / "a.tif")
    assert read_stack(tmp_path / "a.tif", axes="ZYXC").shape == (5, 40, 40, 2)


def test_a_stack_is_not_one_image(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((6, 40, 40), np.uint8))
    with pytest.raises(ValueError, match="holds 6 pages of 40x40 px; expected a 2-D image"):
        read_image(tmp_path / "s.tif")


def test_varying_alpha_is_refused_everywhere(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 10
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    for path in (tmp_path / "a.png", tmp_path / "a.tif"):
        with pytest.raises(ValueError, match="transparency .alpha. channel that varies from 10 to "
                                             "255"):
            read_image(path)


def test_grey_jpeg_masks_are_refused_binary_ones_read(tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 10:40] = 255
    cv2.imwrite(str(tmp_path / "m.jpg"), mask, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert len(np.unique(cv2.imread(str(tmp_path / "m.jpg"), 0))) > 2  # the artefacts
    with pytest.raises(ValueError, match=r"mask .*m.jpg is a JPEG with \d+ different values"):
        read_mask(tmp_path / "m.jpg")
    flat = np.zeros((64, 64), np.uint8)
    cv2.imwrite(str(tmp_path / "flat.jpg"), flat)
    assert read_mask(tmp_path / "flat.jpg").shape == (64, 64)


def test_nan_masks_are_refused(tmp_path):
    mask = np.zeros((9, 9), np.float32)
    mask[0, 0] = np.nan
    tifffile.imwrite(tmp_path / "m.tif", mask)
    with pytest.raises(ValueError, match="m.tif holds NaN or infinite values"):
        read_mask(tmp_path / "m.tif")
