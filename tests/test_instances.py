"""keras_unet.instances and the instance metrics, on hand-built cases with known answers."""

import numpy as np
from scipy import ndimage as ndi
import pytest

from keras_unet.instances import (grow_into_gaps, label_dtype, label_instances, relabel_sequential,
                                  split_at_necks)
from keras_unet.metrics import TAUS, instance_counts, instance_metrics, instance_scores
from keras_unet.targets import check_instance_mask, labels_from_mask, separate_touching


def two_touching(h=12, w=16):
    lab = np.zeros((h, w), np.int32)
    lab[2:10, 2:8] = 5
    lab[2:10, 8:14] = 9
    return lab


# ---------------------------------------------------------------------------------------------
# separating borders


@pytest.mark.parametrize("width,gap", [(1, 2), (2, 4), (3, 6)])
def test_separate_touching_opens_a_gap_of_twice_the_width(width, gap):
    sep = separate_touching(two_touching(), width)
    row = sep[5]
    assert set(np.unique(sep)) == {0, 5, 9}
    assert int(np.sum(row[2:14] == 0)) == gap  # the contact, cut on both sides
    assert np.all(sep[2:10, 2] == 5) and np.all(sep[2:10, 13] == 9)  # outer edges untouched


def test_separate_touching_leaves_lone_objects_and_width_zero_alone():
    lab = np.zeros((10, 10), np.int32)
    lab[2:5, 2:5] = 1
    lab[6:9, 6:9] = 2  # diagonal neighbours 2 px apart: no contact within 1 px
    np.testing.assert_array_equal(separate_touching(lab, 1), lab)
    np.testing.assert_array_equal(separate_touching(two_touching(), 0), two_touching())


def test_separate_touching_matches_a_plain_loop():
    rng = np.random.default_rng(3)
    lab = rng.integers(0, 4, (20, 20)).astype(np.int32)
    expected = lab.copy()
    for y in range(20):
        for x in range(20):
            if lab[y, x] == 0:
                continue
            window = lab[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
            if np.any((window != 0) & (window != lab[y, x])):
                expected[y, x] = 0
    np.testing.assert_array_equal(separate_touching(lab, 1), expected)


def test_labels_from_instance_mask_separate_and_weights_see_the_gap():
    from keras_unet.weights import unet_weight_map

    classes, objects = labels_from_mask(two_touching().astype(np.uint16), 2, "instance",
                                        border_width=1)
    assert classes[5, 7] == 0 and classes[5, 8] == 0 and classes[5, 6] == 1
    weights = unet_weight_map(objects, 10, 5, None)
    assert weights[5, 7] > 9 and weights[5, 7] == weights.max()  # w0 term lands in the gap


def test_grey_photograph_is_not_an_instance_mask():
    photo = np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8)
    with pytest.raises(ValueError, match="looks like an image, not a mask"):
        check_instance_mask(photo, "p.png")
    check_instance_mask(two_touching())  # a real one passes


# ---------------------------------------------------------------------------------------------
# probabilities to labels


def probabilities_of(fg):
    fg = np.asarray(fg, np.float32)
    return np.stack([1 - fg, fg], -1)


def test_components_min_size_holes_and_regrowth():
    truth = two_touching()
    sep = separate_touching(truth, 1)
    fg = (sep > 0).astype(np.float32)
    fg[4, 4] = 0  # a hole inside the first object
    fg[0, 0] = 1  # a one-pixel speck
    labels = label_instances(probabilities_of(fg), 0.5, min_size=3, border_width=1)
    assert labels.dtype == np.uint16 and labels.max() == 2
    assert labels[0, 0] == 0 and labels[4, 4] == labels[3, 3]  # speck gone, hole filled
    # the gap is given back: the two objects touch again, as in the truth
    assert np.array_equal(labels > 0, truth > 0)
    assert instance_metrics(labels, truth)["ap95"] == 1.0


def test_grow_into_gaps_does_not_grow_into_open_background():
    lab = np.zeros((12, 12), np.int32)
    lab[4:8, 4:8] = 1
    np.testing.assert_array_equal(grow_into_gaps(lab, 2), lab)


def test_threshold_none_is_argmax_and_watershed_splits():
    yy, xx = np.mgrid[0:20, 0:30]
    p = np.maximum(np.exp(-((yy - 10) ** 2 + (xx - 9) ** 2) / 30),
                   np.exp(-((yy - 10) ** 2 + (xx - 20) ** 2) / 30))
    probs = probabilities_of(p)
    assert label_instances(probs, 0.2, border_width=0).max() == 1  # one blob
    assert label_instances(probs, 0.2, border_width=0, watershed_split=True,
                           seed_threshold=0.9).max() == 2
    np.testing.assert_array_equal(label_instances(probs, None, border_width=0) > 0, p > 0.5)


def disks(centres, radius, shape=(40, 70)):
    """A boolean image of the union of disks, and each disk on its own."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    each = [(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2 for cy, cx in centres]
    return np.logical_or.reduce(each), each


@pytest.mark.parametrize("depth", [1.0, 1.5, 2.0])
def test_split_at_necks_cuts_two_overlapping_disks_at_the_waist(depth):
    blob, (left, right) = disks([(20, 22), (20, 40)], 11)  # centres 18 px apart, radius 11
    parts = split_at_necks(blob.astype(np.int32), depth)
    ids = np.unique(parts[parts > 0])
    assert len(ids) == 2
    for disk in (left, right):  # each part is one disk, give or take the shared lens
        overlap = [np.sum((parts == i) & disk) / np.sum((parts == i) | disk) for i in ids]
        assert max(overlap) > 0.8
    assert np.array_equal(parts > 0, blob)  # no pixel lost or added


def test_split_at_necks_leaves_convex_and_small_objects_and_never_joins_two():
    yy, xx = np.mgrid[0:40, 0:70]
    ellipse = ((yy - 20) / 8.0) ** 2 + ((xx - 30) / 25.0) ** 2 <= 1  # long, but no waist
    labels = ellipse.astype(np.int32)
    labels[2:5, 2:5] = 2  # too small for a 3 px maximum: keeps its id all the same
    labels[30:38, 60:64] = 3
    labels[30:38, 64:68] = 4  # two objects side by side stay two
    for depth in (1.0, 2.0, 3.0):
        parts = split_at_necks(labels, depth)
        assert np.array_equal(parts > 0, labels > 0)
        for obj in (1, 2, 3, 4):
            assert len(np.unique(parts[labels == obj])) == 1
        assert len(np.unique(parts[parts > 0])) == 4
    np.testing.assert_array_equal(split_at_necks(labels, 0), labels)
    with pytest.raises(ValueError, match="split depth"):
        split_at_necks(labels, -1)


def test_label_instances_splits_at_necks_before_growing_into_gaps():
    blob, _ = disks([(20, 22), (20, 40)], 11)
    probs = probabilities_of(blob.astype(float))
    assert label_instances(probs, 0.5, border_width=1).max() == 1
    split = label_instances(probs, 0.5, border_width=1, split_depth=1.5)
    assert split.max() == 2 and np.all(split[blob] > 0)
    # growing into gaps fills only the notches either side of the new cut
    assert 0 < np.sum((split > 0) & ~blob) <= 4


def test_calibration_chooses_a_neck_depth_only_where_it_helps():
    from keras_unet.evaluate import choose_instance_settings

    blob, (left, right) = disks([(20, 22), (20, 40)], 11)
    truth = np.where(left, 1, 0)
    truth[right & ~left] = 2  # two nuclei, drawn by the network as one blob
    probs = probabilities_of(blob * 0.9)
    chosen = choose_instance_settings([probs], [truth], border_width=0)
    assert chosen["split_depth"] > 0 and chosen["ap50"] == 1.0
    lone, _ = disks([(20, 30)], 11)  # one round nucleus: cutting gains nothing, so no cut
    chosen = choose_instance_settings([probabilities_of(lone * 0.9)], [lone.astype(int)], 0)
    assert chosen == {"threshold": 0.3, "split_depth": 0.0, "min_size": 0, "ap50": 1.0,
                      "map": 1.0, "aji": 1.0, "rand_error": None}
    specks = lone.copy()
    specks[2:4, 2:4] = specks[35:37, 60:63] = True  # 4 and 6 px of noise, no nucleus
    chosen = choose_instance_settings([probabilities_of(specks * 0.9)], [lone.astype(int)], 0,
                                      min_size=3)  # the model's smallest object: 3 px
    assert chosen["min_size"] == 9 and chosen["ap50"] == 1.0  # 3, 6, 9, 15 tried: 9 is the first


def _exhaustive_ap50(probs, truths, border_width, min_size):
    """Every threshold x neck depth x size, as the calibration searched before its two stages."""
    from keras_unet import evaluate
    from keras_unet.metrics import instance_counts, instance_scores

    sizes = sorted({min_size * f for f in evaluate.MIN_SIZE_FACTORS})
    best = None
    for d in evaluate.SPLIT_DEPTHS:
        for t in evaluate.THRESHOLDS:
            for s in sizes:
                found = instance_scores([instance_counts(label_instances(p, t, s, border_width,
                                                                         d), tr)
                                         for p, tr in zip(probs, truths)])
                if best is None or (found["ap50"], found["map"]) > best[0]:
                    best = ((found["ap50"], found["map"]), (t, d, s))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_staged_calibration_labels_a_third_and_finds_the_exhaustive_best(seed, monkeypatch):
    """Touching disks of random sizes, drawn as blurred noisy blobs with faint specks: the two
    stages label 34 of the 100 combinations and reach the exhaustive search's AP50 and mAP."""
    from keras_unet import evaluate

    rng = np.random.default_rng(seed)
    shape = (96, 128)
    truth = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    for k in range(14):
        cy, cx, r = rng.integers(8, shape[0] - 8), rng.integers(8, shape[1] - 8), rng.integers(4, 9)
        truth[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (truth == 0)] = k + 1
    fg = ndi.gaussian_filter((truth > 0).astype(np.float32), 1.2)
    fg = np.clip(fg + rng.normal(0, 0.15, shape) * (rng.random(shape) < 0.02), 0, 1)
    probs = [probabilities_of(fg)]
    calls = []
    real = evaluate.label_instances
    monkeypatch.setattr(evaluate, "label_instances", lambda *a: calls.append(a) or real(*a))
    chosen = evaluate.choose_instance_settings(probs, [truth], border_width=0, min_size=4)
    assert len(calls) == 25 + 3 * 3  # 25 pairs at 4 px, then 8, 12 and 20 px for the best 3
    (ap50, map_), _ = _exhaustive_ap50(probs, [truth], 0, 4)
    assert (chosen["ap50"], chosen["map"]) == (ap50, map_)


def test_calibration_for_the_rand_error_avoids_merging_large_cells():
    """Two large cells behind a faint membrane and five faint small objects: thresholds up to
    0.3 find the small objects (AP50 5/8) but merge the cells; from 0.4 up the cells stay apart
    and the small objects are missed (AP50 2/7). AP50 prefers 0.3. The Rand error prefers 0.4
    and above, and of those 0.5, the first whose neighbours (0.4, 0.6) merge nothing either."""
    from keras_unet.evaluate import choose_instance_settings
    from keras_unet.metrics import rand_error_instances

    truth = np.zeros((100, 140), int)
    truth[5:95, 5:45], truth[5:95, 47:87] = 1, 2  # two cells, a 2 px membrane between
    fg = np.where(truth > 0, 0.9, 0.0)
    fg[5:95, 45:47] = 0.35  # the membrane, drawn faintly
    for k, y in enumerate(range(10, 90, 16)):  # five 4x4 objects, drawn faintly
        truth[y:y + 4, 110:114] = 3 + k
        fg[y:y + 4, 110:114] = 0.35
    probs = probabilities_of(fg)
    for_ap50 = choose_instance_settings([probs], [truth], border_width=0)
    assert for_ap50["threshold"] == 0.3 and for_ap50["ap50"] == 5 / 8
    assert for_ap50["rand_error"] is None
    for_rand = choose_instance_settings([probs], [truth], border_width=0, metric="rand")
    assert for_rand["threshold"] == 0.5 and for_rand["ap50"] == 2 / 7
    assert for_rand["split_depth"] == 0.0 and for_rand["min_size"] == 0
    apart = label_instances(probs, 0.5, 0, 0, 0.0)
    assert for_rand["rand_error"] == pytest.approx(rand_error_instances(apart, truth))
    at_04 = label_instances(probs, 0.4, 0, 0, 0.0)  # as good alone, but next to a merge
    assert rand_error_instances(at_04, truth) == pytest.approx(for_rand["rand_error"])
    merged = label_instances(probs, 0.3, 0, 0, 0.0)
    assert merged.max() == 6 and rand_error_instances(merged, truth) > 2 * for_rand["rand_error"]
    with pytest.raises(ValueError, match="metric must be one of ap50, rand"):
        choose_instance_settings([probs], [truth], 0, metric="f1")


def test_relabel_and_dtype():
    lab = np.array([[0, 7, 7], [3, 0, 9]])
    np.testing.assert_array_equal(relabel_sequential(lab), [[0, 1, 1], [2, 0, 3]])
    assert label_dtype(65535) == np.uint16 and label_dtype(65536) == np.uint32


def test_more_than_65535_objects_become_uint32():
    fg = np.zeros((2 * 300, 2 * 300), np.float32)
    fg[::2, ::2] = 1  # 90,000 isolated pixels
    labels = label_instances(probabilities_of(fg), 0.5, min_size=0, border_width=0)
    assert labels.dtype == np.uint32 and labels.max() == 90_000


# ---------------------------------------------------------------------------------------------
# metrics with known answers


def square(lab, y, x, size, value):
    lab[y:y + size, x:x + size] = value


def test_ap_counts_matches_above_each_threshold():
    truth = np.zeros((40, 40), np.int32)
    square(truth, 0, 0, 10, 1)
    square(truth, 20, 20, 10, 2)
    square(truth, 0, 25, 10, 3)  # missed
    pred = np.zeros_like(truth)
    square(pred, 0, 0, 10, 4)  # exact: IoU 1
    square(pred, 20, 22, 10, 8)  # shifted by 2: IoU 80 / 120 = 0.667
    square(pred, 30, 0, 5, 9)  # false positive
    scores = instance_metrics(pred, truth)
    # tau = 0.5, 0.55, 0.6, 0.65: TP 2 (FP 1, FN 1); from 0.7 on: TP 1 (FP 2, FN 2)
    assert scores["ap50"] == pytest.approx(2 / 4) and scores["ap65"] == pytest.approx(2 / 4)
    assert scores["ap70"] == pytest.approx(1 / 5) and scores["ap95"] == pytest.approx(1 / 5)
    assert scores["map"] == pytest.approx((4 * 0.5 + 6 * 0.2) / 10)
    assert scores["f1"] == pytest.approx(2 * 2 / (3 + 3))
    assert (scores["n_pred"], scores["n_true"], scores["merges"], scores["splits"]) == (3, 3, 0, 0)


def test_merges_and_splits():
    truth = np.zeros((20, 40), np.int32)
    square(truth, 0, 0, 10, 1)
    square(truth, 0, 10, 10, 2)
    square(truth, 10, 25, 10, 3)
    pred = np.zeros_like(truth)
    pred[0:10, 0:20] = 1  # covers truth 1 and 2 entirely: one merge
    pred[10:20, 25:30] = 2  # truth 3 cut in two: one split
    pred[10:20, 30:35] = 3
    counts = instance_counts(pred, truth)
    assert counts["merges"] == 1 and counts["splits"] == 1 and counts["tp"][0] == 0


def test_counts_sum_over_images_and_empty_cases():
    a = np.zeros((5, 5), np.int32)
    a[1:3, 1:3] = 1
    both_empty = instance_scores([instance_counts(np.zeros((5, 5)), np.zeros((5, 5)))])
    assert both_empty["ap50"] == 1.0 and both_empty["map"] == 1.0
    total = instance_scores([instance_counts(a, a), instance_counts(np.zeros_like(a), a)])
    assert total["ap50"] == pytest.approx(1 / 2) and total["n_true"] == 2
    assert len(TAUS) == 10 and TAUS[0] == 0.5 and TAUS[-1] == 0.95


def test_metrics_agree_with_a_plain_iou_matrix():
    rng = np.random.default_rng(5)
    truth = np.zeros((60, 60), np.int32)
    pred = np.zeros_like(truth)
    for k in range(1, 10):
        y, x = rng.integers(0, 50, 2)
        square(truth, y, x, 8, k)
        square(pred, y + rng.integers(-3, 4), x + rng.integers(-3, 4), 8, k + 20)
    ious = np.array([[np.sum((truth == t) & (pred == p)) / np.sum((truth == t) | (pred == p))
                      for p in np.unique(pred)[1:]] for t in np.unique(truth)[1:]])
    counts = instance_counts(pred, truth)
    for tau, tp in zip(TAUS, counts["tp"]):
        assert tp == int(np.sum(ious > tau))
