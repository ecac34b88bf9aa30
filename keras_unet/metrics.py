"""Segmentation metrics, including those of the ISBI 2012 challenge.

All functions take integer class masks ``(H, W)`` (prediction and truth, same shape); the
foreground is class 1 unless said otherwise.

* **pixel error**: the fraction of pixels whose class differs (ISBI 2012's pixel error);
* **IoU** and **Dice** of the foreground class;
* **Rand error** (ISBI 2012): ``1 -`` the foreground-restricted Rand F-score between the objects of
  the truth and of the prediction (their 4-connected foreground components), as computed by
  ``skimage.metrics.adapted_rand_error``; background pixels of the truth are ignored.

The ISBI warping error (topology-preserving warping) is not implemented.
"""

from __future__ import annotations

import numpy as np

from .weights import instances_from_mask

__all__ = ["pixel_error", "iou", "dice", "rand_error", "segmentation_metrics", "summarize",
           "format_table"]


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
    from skimage.metrics import adapted_rand_error

    pred, truth = _pair(pred, truth)
    truth_objects = instances_from_mask(truth == cls)
    pred_objects = instances_from_mask(pred == cls)
    if truth_objects.max() == 0:
        return 0.0 if pred_objects.max() == 0 else 1.0
    error, _, _ = adapted_rand_error(truth_objects, pred_objects)
    return float(error)


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


def format_table(result: dict) -> str:
    """The per-image rows and the mean of :func:`keras_unet.predict.evaluate_files` as a table."""
    lines = [f"{'image':24s} {'pixel err':>9s} {'IoU':>7s} {'Dice':>7s} {'Rand err':>9s}"]
    for r in result["images"] + [{"image": "mean", **result["mean"]}]:
        lines.append(f"{r['image'][:24]:24s} {r['pixel_error']:9.4f} {r['iou']:7.4f} "
                     f"{r['dice']:7.4f} {r['rand_error']:9.4f}")
    return "\n".join(lines)
