import numpy as np
import pytest

from keras_unet.metrics import (dice, iou, pixel_error, rand_error, rand_error_instances,
                                segmentation_metrics, summarize)


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


def test_rand_error_of_an_empty_prediction_is_one():
    """All membrane: no pair of the truth's pixels is found together (recall 0), so the
    Rand F-score is 0 (skimage's formula divides 0 by 0 here)."""
    truth = np.zeros((5, 9), int)
    truth[:, :4] = 1
    truth[:, 5:] = 1
    assert rand_error(np.zeros_like(truth), truth) == 1.0
    assert rand_error_instances(np.zeros_like(truth), truth) == 1.0
    one_pixel_each = np.zeros_like(truth)  # objects of one pixel: still no pair found
    one_pixel_each[0, 0], one_pixel_each[0, 8] = 1, 2
    assert rand_error_instances(one_pixel_each, truth) == 1.0


def test_rand_error_predicted_membrane_pixels_join_no_object():
    """A thicker predicted membrane is no merge (ISBI 2012 / Fiji's RandError prunes them)."""
    truth = np.zeros((5, 9), int)
    truth[:, :4] = 1
    truth[:, 5:] = 1  # objects of 20 px either side of column 4
    pred = np.ones_like(truth)
    pred[:, 3:6] = 0  # the membrane drawn 3 px wide: 5 px of each true object left out
    # pairs together in the prediction: 2 * C(15, 2) = 210, all of them right (precision 1);
    # pairs together in the truth: 2 * C(20, 2) = 380, of which 210 found (recall 210 / 380)
    recall = 210 / 380
    assert rand_error(pred, truth) == pytest.approx(1 - 2 * recall / (1 + recall))
    # the 10 membrane pixels as one object would have merged the two cells (precision < 1)
    assert rand_error(pred, truth) < 0.29


def _fiji_rand_error(truth_labels, pred_labels):
    """Plain reference: Fiji's RandError.getRandIndexStats (zero row and column pruned)."""
    t, p = truth_labels.ravel(), pred_labels.ravel()
    table = np.zeros((t.max() + 1, p.max() + 1))
    np.add.at(table, (t, p), 1)
    pairs = lambda x: (x * (x - 1) / 2).sum()  # noqa: E731
    together = pairs(table[1:, 1:])
    precision = together / pairs(table[1:, 1:].sum(axis=0))
    recall = together / pairs(table[1:, :].sum(axis=1))
    return 1 - 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rand_error_against_the_challenge_reference(seed):
    from skimage.measure import label

    rng = np.random.default_rng(seed)
    truth = label(rng.random((40, 40)) > 0.35, connectivity=1)
    pred = label((rng.random((40, 40)) > 0.4) | (truth > 0) & (rng.random((40, 40)) > 0.2),
                 connectivity=1)
    assert rand_error_instances(pred, truth) == pytest.approx(_fiji_rand_error(truth, pred))


def test_empty_cases_and_summary(pair):
    empty = np.zeros((4, 4), int)
    assert iou(empty, empty) == 1.0 and dice(empty, empty) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        pixel_error(empty, np.zeros((4, 5), int))
    rows = [segmentation_metrics(*pair), segmentation_metrics(pair[1], pair[1])]
    assert summarize(rows)["pixel_error"] == pytest.approx(1 / 36)


# --------------------------------------------------------------------------------------------
# AJI (Kumar et al. 2017)


def reference_aji(pred, truth):
    """The AJI as the MoNuSeg challenge's code and HoVer-Net's get_fast_aji compute it, one
    object at a time: each true object takes the overlapping prediction of the highest IoU
    (first id on ties); unpaired true and predicted objects add their areas to the union."""
    true_ids = [i for i in np.unique(truth) if i]
    pred_ids = [i for i in np.unique(pred) if i]
    inter_sum = union_sum = 0
    used = set()
    for t in true_ids:
        g = truth == t
        best = None
        for p in pred_ids:
            s = pred == p
            inter = int(np.sum(g & s))
            if inter == 0:
                continue
            union = int(np.sum(g | s))
            if best is None or inter / union > best[0]:
                best = (inter / union, p, inter, union)
        if best is None:
            union_sum += int(g.sum())
        else:
            inter_sum += best[2]
            union_sum += best[3]
            used.add(best[1])
    union_sum += sum(int(np.sum(pred == p)) for p in pred_ids if p not in used)
    return inter_sum / union_sum if union_sum else 1.0


def test_aji_hand_built():
    from keras_unet.metrics import aji

    truth = np.zeros((5, 8), int)
    truth[0:2, 0:2] = 1  # 4 px, found by a 6 px object
    truth[0:2, 4:6] = 2  # 4 px, missed
    pred = np.zeros_like(truth)
    pred[0:2, 0:3] = 7
    pred[3, 5] = 9  # 1 px, matches nothing
    assert aji(pred, truth) == pytest.approx(4 / (6 + 4 + 1))
    # one prediction over two true objects is paired with both: 8 / (8 + 8)
    truth = np.zeros((2, 4), int)
    truth[:, :2], truth[:, 2:] = 1, 2
    assert aji(np.ones_like(truth), truth) == pytest.approx(0.5)
    assert aji(truth, truth) == 1.0
    assert aji(np.zeros_like(truth), np.zeros_like(truth)) == 1.0
    assert aji(np.zeros_like(truth), truth) == 0.0


def test_aji_matches_the_reference_on_random_blobs(rng):
    from scipy import ndimage as ndi

    from keras_unet.metrics import aji, instance_counts, instance_scores

    for trial in range(6):
        truth = ndi.label(ndi.gaussian_filter(rng.random((48, 56)), 2) > 0.52)[0]
        pred = ndi.label(ndi.gaussian_filter(rng.random((48, 56)), 2) > 0.5)[0]
        pred = np.where(rng.random(pred.shape) < 0.5, pred, ndi.shift(truth, (1, 2), order=0))
        assert truth.max() > 2 and pred.max() > 2
        assert aji(pred, truth) == pytest.approx(reference_aji(pred, truth))
    # over images: the mean of their AJIs
    a, b = np.zeros((4, 4), int), np.zeros((4, 4), int)
    a[:2, :2] = 1
    b[:2, :3] = 1
    both = instance_scores([instance_counts(a, a), instance_counts(b, a)])
    assert both["aji"] == pytest.approx((1.0 + 4 / 6) / 2)
