import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi

from keras_unet.data import demo_data
from keras_unet.images import read_mask
from keras_unet.weights import (
    border_weights,
    class_weight_map,
    instances_from_mask,
    to_instances,
    truncation_distance,
    unet_weight_map,
)


def exact_border(labels, w0=10.0, sigma=5.0):
    """Straightforward reference: one distance transform per object, the two smallest per pixel."""
    ids = [i for i in np.unique(labels) if i != 0]
    if len(ids) < 2:
        return np.zeros(labels.shape)
    d = np.sort(np.stack([ndi.distance_transform_edt(labels != i) for i in ids]), axis=0)
    border = w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2))
    border[labels > 0] = 0
    return border


def discs(centres, radius, shape=(96, 96)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, start=1):
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2) & (labels == 0)] = i
    return labels


LAYOUTS = {
    "touching discs": discs([(30, 30), (30, 49), (49, 40)], 10),
    "chain of cells": discs([(48, 10 + 13 * i) for i in range(6)], 6),
    "single cell": discs([(40, 40)], 12),
    "no cell": np.zeros((64, 64), np.int32),
    "demo cells": demo_data(1, 128, seed=3)[1][0],
    "sparse big ids": discs([(20, 20), (20, 45), (60, 30)], 9) * 7919,
}


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("w0,sigma", [(10.0, 5.0), (5.0, 2.0), (10.0, 10.0)])
def test_matches_exact_reference(name, w0, sigma):
    labels = LAYOUTS[name]
    ours = border_weights(labels, w0, sigma)
    assert ours.dtype == np.float32 and ours.shape == labels.shape
    assert np.abs(ours - exact_border(labels, w0, sigma)).max() < 1e-3


def test_single_and_no_cell_have_no_border_term():
    assert not border_weights(LAYOUTS["single cell"]).any()
    assert not border_weights(LAYOUTS["no cell"]).any()
    w = unet_weight_map(LAYOUTS["no cell"], class_weights="balanced")
    np.testing.assert_allclose(w, 1.0)


@pytest.mark.parametrize("gap", [1, 2])
def test_hand_computed_gap_between_two_squares(gap):
    labels = np.zeros((30, 40), np.int32)
    labels[10:20, 5:15] = 1
    labels[10:20, 15 + gap : 25 + gap] = 2
    w = unet_weight_map(labels, w0=10, sigma=5, class_weights=None)
    line = w[10:20, 15 : 15 + gap]
    if gap == 1:
        expected = 1 + 10 * np.exp(-((1 + 1) ** 2) / 50)
    else:
        expected = 1 + 10 * np.exp(-((1 + 2) ** 2) / 50)
    np.testing.assert_allclose(line, expected, rtol=1e-6)
    assert np.all(w[labels > 0] == 1)


def test_balanced_class_weights_have_mean_one():
    labels = LAYOUTS["touching discs"]
    wc = class_weight_map((labels > 0).astype(int), "balanced")
    assert wc.mean() == pytest.approx(1.0, rel=1e-6)
    frac = (labels > 0).mean()
    assert wc[labels > 0][0] == pytest.approx(1 / (2 * frac), rel=1e-6)
    assert wc[labels == 0][0] == pytest.approx(1 / (2 * (1 - frac)), rel=1e-6)


def test_class_weight_mapping_and_none():
    classes = np.array([[0, 1], [2, 1]])
    np.testing.assert_allclose(class_weight_map(classes, {0: 1, 1: 2, 2: 5}), [[1, 2], [5, 2]])
    np.testing.assert_allclose(class_weight_map(classes, None), 1)
    with pytest.raises(ValueError, match=r"no weight for class\(es\) \[2\]"):
        class_weight_map(classes, {0: 1, 1: 2})
    with pytest.raises(ValueError, match="class_weights must be"):
        class_weight_map(classes, "inverse")


def test_weight_map_is_class_weights_plus_border():
    labels = LAYOUTS["touching discs"]
    w = unet_weight_map(labels)
    expected = class_weight_map((labels > 0).astype(int)) + exact_border(labels)
    assert np.abs(w - expected).max() < 1e-3


def test_truncation_error_bound():
    # beyond the truncation distance the term is below the tolerance
    t = truncation_distance(10, 5, 1e-4)
    assert 10 * np.exp(-(t**2) / 50) == pytest.approx(1e-4, rel=1e-6)


def test_deterministic():
    # Big enough for several threads; OpenCV's own thread pool once made the last bits vary.
    labels = demo_data(1, 256, seed=4)[1][0]
    first = unet_weight_map(labels)
    for _ in range(5):
        np.testing.assert_array_equal(unet_weight_map(labels.copy()), first)


@pytest.mark.parametrize(
    "labels,match",
    [
        (np.zeros((4, 4, 2), np.int32), "2-D"),
        (np.array([[0.0, 1.5], [2.0, 0.0]]), "non-integer"),
        (np.array([[0, -1], [2, 0]]), "negative"),
        (np.zeros((0, 5), np.int32), "empty"),
        (np.array([[True, False]]), "boolean mask"),
        (np.array([["a", "b"]]), "integer ids"),
    ],
)
def test_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        unet_weight_map(labels)


def test_float_labels_with_whole_values_work():
    labels = LAYOUTS["touching discs"]
    np.testing.assert_array_equal(unet_weight_map(labels.astype(float)), unet_weight_map(labels))


@pytest.mark.parametrize("w0,sigma,match", [(10, 0, "sigma"), (10, -1, "sigma"), (-1, 5, "w0")])
def test_bad_parameters(w0, sigma, match):
    with pytest.raises(ValueError, match=match):
        unet_weight_map(LAYOUTS["touching discs"], w0=w0, sigma=sigma)


def test_instances_from_isbi_style_mask():
    # 255 = cell interior, 0 = membrane: three cells separated by 1 px membranes
    mask = np.full((20, 31), 255, np.uint8)
    mask[:, 10] = 0
    mask[:, 20] = 0
    labels = instances_from_mask(mask)
    assert labels.max() == 3
    assert set(np.unique(labels[:, :10])) == {1}
    w = unet_weight_map(labels, class_weights=None)
    assert np.allclose(w[:, 10], 1 + 10 * np.exp(-4 / 50))  # membranes are the heaviest pixels
    assert w[:, 10].min() > w[mask > 0].max()


def test_connectivity():
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = True  # touching only at a corner
    assert instances_from_mask(mask).max() == 2
    assert instances_from_mask(mask, connectivity=8).max() == 1
    with pytest.raises(ValueError, match="connectivity"):
        instances_from_mask(mask, connectivity=6)


@pytest.mark.parametrize("values", [(0, 1), (0, 255), (False, True)])
def test_to_instances_auto_binary(values):
    mask = np.zeros((10, 10), type(values[1]) if values[1] is not True else bool)
    mask[1:4, 1:4] = values[1]
    mask[6:9, 6:9] = values[1]
    assert to_instances(mask).max() == 2


def test_sixteen_bit_instance_png(tmp_path):
    labels = LAYOUTS["touching discs"].astype(np.uint16) * 1000
    path = tmp_path / "labels.png"
    cv2.imwrite(str(path), labels)
    read = read_mask(path)
    assert read.dtype == np.uint16
    inst = to_instances(read)
    np.testing.assert_array_equal(inst, labels)
    assert np.abs(unet_weight_map(inst) - unet_weight_map(LAYOUTS["touching discs"])).max() < 1e-6


@pytest.mark.parametrize("block", [2_000, 12_000])  # bands of 100 and 171 rows
def test_large_masks_band_by_band_give_the_same_map(monkeypatch, block):
    """Bands of rows with their halo give exactly the whole mask's border weights."""
    import keras_unet.weights as weights

    rng = np.random.default_rng(3)
    labels = np.zeros((400, 70), np.int32)
    yy, xx = np.mgrid[:400, :70]
    for k in range(1, 120):  # touching and overlapping discs, some across band edges
        cy, cx, r = rng.uniform(0, 400), rng.uniform(0, 70), rng.uniform(3, 12)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = k * 1000  # sparse ids
    whole = weights.border_weights(labels, 10.0, 5.0)
    monkeypatch.setattr(weights, "BLOCK_PIXELS", block)
    banded = weights.border_weights(labels, 10.0, 5.0)
    assert (whole > 1).sum() > 100
    np.testing.assert_array_equal(banded, whole)
