import numpy as np
import pytest

from keras_unet.metrics import dice, iou, pixel_error, rand_error, segmentation_metrics, summarize


@pytest.fixture
def pair():
    truth = np.zeros((6, 6), int)
    truth[1:3, 1:5] = 1  # 8 foreground pixels
    pred = truth.copy()
    pred[1, 1] = 0  # one missed
    pred[4, 4] = 1  # one false positive
    return pred, truth


def test_hand_computed(pair):
    pred, truth = pair
    assert pixel_error(pred, truth) == pytest.approx(2 / 36)
    assert iou(pred, truth) == pytest.approx(7 / 9)
    assert dice(pred, truth) == pytest.approx(14 / 16)


def test_rand_error_merge_and_split():
    truth = np.zeros((5, 9), int)
    truth[:, :4] = 1
    truth[:, 5:] = 1  # two objects separated by a membrane column
    assert rand_error(truth, truth) == 0
    merged = np.ones_like(truth)  # the membrane is missed: one object
    # foreground-restricted Rand: 40 truth pixels in two objects of 20, all in one predicted object
    # pixel pairs without self-pairs: precision = (2 * 20^2 - 40) / (40^2 - 40), recall = 1
    precision = (2 * 20**2 - 40) / (40**2 - 40)
    f = 2 * precision / (precision + 1)
    assert rand_error(merged, truth) == pytest.approx(1 - f)
    assert rand_error(np.zeros_like(truth), np.zeros_like(truth)) == 0


def test_empty_cases_and_summary(pair):
    empty = np.zeros((4, 4), int)
    assert iou(empty, empty) == 1.0 and dice(empty, empty) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        pixel_error(empty, np.zeros((4, 5), int))
    rows = [segmentation_metrics(*pair), segmentation_metrics(pair[1], pair[1])]
    assert summarize(rows)["pixel_error"] == pytest.approx(1 / 36)
