"""Segmentation metrics, including those of the ISBI 2012 challenge.

All functions take integer class masks ``(H, W)`` (prediction and truth, same shape); the
foreground is class 1 unless said otherwise.

* **pixel error**: the fraction of pixels whose class differs (ISBI 2012's pixel error);
* **IoU** and **Dice** of the foreground class;
* **Rand error** (ISBI 2012): ``1 -`` the foreground-restricted Rand F-score between the objects of
  the truth and of the prediction (their 4-connected foreground components), as the challenge's
  reference code (Fiji's ``trainableSegmentation.metrics.RandError``) computes it: pixels that are
  background in the truth are left out, and pixels that are background in the prediction belong
  to no object (a pixel pair that includes one is never "together"). They are not one big object:
  that would count every predicted membrane pixel inside a true cell as a merge of all of them.
  ``skimage.metrics.adapted_rand_error`` computes the score once the prediction's background
  pixels are given an id each.

Instance metrics take integer label images (0 = background, one id per object) and follow the
DSB 2018 / StarDist convention:

* a predicted and a true object **match** at threshold ``tau`` when their IoU exceeds ``tau``
  (for ``tau >= 0.5`` each object has at most one match);
* **AP at tau** = TP / (TP + FP + FN), **F1 at tau** = 2 TP / (2 TP + FP + FN);
* **mAP** is the mean AP over ``tau = 0.5, 0.55, ..., 0.95``;
* over several images the counts are summed first (StarDist's ``matching_dataset``);
* a **merge** is a predicted object covering more than half of two or more true objects; a
  **split** is a true object holding more than half of two or more predicted objects.

**AJI**, the aggregated Jaccard index (Kumar et al., IEEE TMI 2017, the MoNuSeg challenge's
metric): each true object ``G`` is paired with the predicted object ``S`` of the highest IoU
among those that overlap it (ties: the lowest id); ``AJI = sum |G n S| / (sum |G u S| + the areas
of the true objects overlapped by no prediction + the areas of the predicted objects paired with
no true object)``. A predicted object may be paired with several true ones (as in the challenge's
code and HoVer-Net's ``get_fast_aji``). Over several images, the AJI of each image is averaged
(the challenge's convention); an image with neither true nor predicted objects scores 1.

The ISBI warping error (topology-preserving warping) is not implemented.
"""

from __future__ import annotations

import numpy as np

from .weights import instances_from_mask

__all__ = ["pixel_error", "iou", "dice", "rand_error", "segmentation_metrics", "summarize",
           "TAUS", "instance_counts", "instance_scores", "instance_metrics",
           "rand_error_instances", "aji"]

TAUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _pair(pred, truth):
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} must have the same shape")
    return pred, truth


def pixel_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of pixels with a different class."""
    pred, truth = _pair(pred, truth)
    return float(np.mean(pred != truth))


def iou(pred: np.ndarray, truth: np.ndarray, cls: int = 1) -> float:
    """Intersection over union of class ``cls`` (1.0 when both are empty)."""
    pred, truth = _pair(pred, truth)
    p, t = pred == cls, truth == cls
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


def dice(pred: np.ndarray, truth: np.ndarray, cls: int = 1) -> float:
    """Dice coefficient of class ``cls`` (1.0 when both are empty)."""
    pred, truth = _pair(pred, truth)
    p, t = pred == cls, truth == cls
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(p, t).sum() / total)


def rand_error(pred: np.ndarray, truth: np.ndarray, cls: int = 1) -> float:
    """ISBI 2012 Rand error: 1 - foreground-restricted Rand F-score of the objects."""
    pred, truth = _pair(pred, truth)
    return _rand_error(instances_from_mask(truth == cls), instances_from_mask(pred == cls))


def _rand_error(truth: np.ndarray, pred: np.ndarray) -> float:
    """Foreground-restricted Rand error of two label images (0 = background in both)."""
    from skimage.metrics import adapted_rand_error

    if truth.max() == 0:
        return 0.0 if pred.max() == 0 else 1.0
    # The prediction's background pixels belong to no object: one id each (singletons).
    pred = pred.astype(np.int64)
    background = pred == 0
    pred[background] = pred.max() + 1 + np.arange(int(background.sum()))
    with np.errstate(invalid="ignore"):
        error, _, _ = adapted_rand_error(truth.astype(np.int64), pred)
    # NaN where no two foreground pixels share a predicted object (an empty prediction): no
    # pair of the truth is found, so the Rand F-score is 0
    return 1.0 if np.isnan(error) else float(error)


def segmentation_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """All metrics above for one image."""
    return {
        "pixel_error": pixel_error(pred, truth),
        "iou": iou(pred, truth),
        "dice": dice(pred, truth),
        "rand_error": rand_error(pred, truth),
    }


def summarize(per_image: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over images."""
    if not per_image:
        return {}
    return {k: float(np.mean([m[k] for m in per_image])) for k in per_image[0]}


def _sequential(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Ids 1..N (0 stays background) as int64, and N."""
    ids, inverse = np.unique(np.asarray(labels).ravel(), return_inverse=True)
    if ids.size and ids[0] == 0:
        return inverse.astype(np.int64), ids.size - 1
    return inverse.astype(np.int64) + 1, ids.size


def instance_counts(pred: np.ndarray, truth: np.ndarray, taus=TAUS) -> dict[str, object]:
    """Matching counts between predicted and true instance labels of one image.

    Returns:
        ``{"tp": [TP per tau], "n_pred", "n_true", "merges", "splits"}``.
    """
    pred, truth = _pair(pred, truth)
    p, n_pred = _sequential(pred)
    t, n_true = _sequential(truth)
    area_p = np.bincount(p, minlength=n_pred + 1)
    area_t = np.bincount(t, minlength=n_true + 1)
    both = (p > 0) & (t > 0)
    keys, inter = np.unique(t[both] * (n_pred + 1) + p[both], return_counts=True)
    ti, pi = keys // (n_pred + 1), keys % (n_pred + 1)
    iou_pairs = inter / (area_t[ti] + area_p[pi] - inter)
    # for tau >= 0.5 an object overlaps at most one other by IoU > tau: counting pairs counts TPs
    tp = [int(np.sum(iou_pairs > tau)) for tau in taus]
    covers_t = inter > 0.5 * area_t[ti]  # pairs where the prediction holds most of the truth
    covers_p = inter > 0.5 * area_p[pi]  # pairs where the truth holds most of the prediction
    merges = int(np.sum(np.bincount(pi[covers_t], minlength=n_pred + 1) >= 2))
    splits = int(np.sum(np.bincount(ti[covers_p], minlength=n_true + 1) >= 2))
    aji_inter, aji_union = _aji_sums(ti, pi, inter, iou_pairs, area_t, area_p)
    return {"tp": tp, "n_pred": n_pred, "n_true": n_true, "merges": merges, "splits": splits,
            "aji_inter": aji_inter, "aji_union": aji_union}


def _aji_sums(ti, pi, inter, iou_pairs, area_t, area_p) -> tuple[int, int]:
    """The AJI's numerator and denominator (see the module docs) from the overlapping pairs:
    true ids ``ti``, predicted ids ``pi`` (sequential, 0 = background), their intersections and
    IoUs, and the objects' areas (index 0: background)."""
    order = np.lexsort((pi, -iou_pairs, ti))  # by true id, then best IoU, then lowest pred id
    first = order[np.r_[True, ti[order][1:] != ti[order][:-1]]] if order.size else order
    t_best, p_best = ti[first], pi[first]
    inter_sum = int(inter[first].sum())
    union_sum = int((area_t[t_best] + area_p[p_best] - inter[first]).sum())
    unpaired_true = np.ones(area_t.size, bool)
    unpaired_true[0], unpaired_true[t_best] = False, False
    unpaired_pred = np.ones(area_p.size, bool)
    unpaired_pred[0], unpaired_pred[p_best] = False, False
    union_sum += int(area_t[unpaired_true].sum() + area_p[unpaired_pred].sum())
    return inter_sum, union_sum


def instance_scores(counts: list[dict], taus=TAUS) -> dict[str, float]:
    """AP per tau, mAP, F1 at 0.5 and the summed counts, from :func:`instance_counts` of one or
    more images (counts summed first); ``aji``: the mean of the images' AJI."""
    n_pred = sum(c["n_pred"] for c in counts)
    n_true = sum(c["n_true"] for c in counts)
    tps = np.sum([c["tp"] for c in counts], axis=0) if counts else np.zeros(len(taus))
    out: dict[str, float] = {}
    for tau, tp in zip(taus, tps):
        denominator = n_pred + n_true - tp  # TP + FP + FN
        out[f"ap{round(tau * 100):02d}"] = float(tp / denominator) if denominator else 1.0
    out["map"] = float(np.mean([out[f"ap{round(t * 100):02d}"] for t in taus]))
    tp50 = float(tps[0]) if len(tps) else 0.0
    out["f1"] = float(2 * tp50 / (n_pred + n_true)) if n_pred + n_true else 1.0
    out["aji"] = (float(np.mean([c["aji_inter"] / c["aji_union"] if c["aji_union"] else 1.0
                                 for c in counts])) if counts else 1.0)
    out.update(n_pred=n_pred, n_true=n_true, merges=sum(c["merges"] for c in counts),
               splits=sum(c["splits"] for c in counts))
    return out


def aji(pred: np.ndarray, truth: np.ndarray) -> float:
    """The aggregated Jaccard index of one image's instance labels (see the module docs).

    Args:
        pred, truth: ``(H, W)`` integer labels, 0 = background, any ids.

    Returns:
        AJI in [0, 1]; 1.0 when both hold no object.
    """
    return instance_scores([instance_counts(pred, truth)])["aji"]


def instance_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """:func:`instance_scores` of one image."""
    return instance_scores([instance_counts(pred, truth)])


def rand_error_instances(pred: np.ndarray, truth: np.ndarray) -> float:
    """ISBI 2012 Rand error between instance labels, as :func:`rand_error` computes it."""
    pred, truth = _pair(pred, truth)
    return _rand_error(np.asarray(truth), np.asarray(pred))
