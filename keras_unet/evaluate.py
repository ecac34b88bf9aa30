"""Score a model on labelled images: pixel, object and instance metrics, per image and overall.

Pixel metrics (pixel error, foreground IoU and Dice, ISBI Rand error) compare class masks.
Instance metrics (AP at IoU 0.5 ... 0.95, mAP, F1, merges and splits; :mod:`keras_unet.metrics`)
compare the objects of the truth with :func:`keras_unet.instances.label_instances` of the
prediction, with the model's own post-processing settings unless others are given. For instance
metrics the truth may be an instance mask (one id per object, any order, holes allowed) or a
binary mask (its 4-connected components are the objects). The Rand error is computed from the
instance output too (``rand_error_instances``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from ._compat import keras
from .axes import check_axes
from .config import CALIBRATION_METRICS
from .images import groups_of, read_groups, read_pairs
from .instances import label_instances
from .metrics import (
    TAUS,
    instance_counts,
    instance_scores,
    rand_error_instances,
    segmentation_metrics,
    summarize,
)
from .predict import InstanceOptions, Predictor, validate_batch_tile
from .pretrained import packaged_models, resolve_model
from .targets import labels_from_mask

__all__ = ["evaluate_files", "format_table", "calibrate_instances", "choose_instance_settings",
           "read_groups", "group_folders"]

#: the instance scores reported per group
GROUP_KEYS = ("ap50", "ap75", "map", "aji", "f1", "n_pred", "n_true", "merges", "splits")


def group_folders(images: str | os.PathLike) -> list[str]:
    """The sub-folders of ``images`` when it holds sub-folders and no image of its own (each
    sub-folder is then a group), else []."""
    from .images import IMAGE_SUFFIXES

    folder = Path(images)
    if not folder.is_dir():
        return []
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
        return []
    return sorted(p.name for p in entries if p.is_dir())


def _load_grouped(images, masks, groups, axes: str | None = None
                  ) -> tuple[list, list, list[str], list[str], list[str] | None]:
    """Images, masks, names, the masks' files and each image's group (None without groups)."""
    folders = group_folders(images) if groups is None else []
    if folders:
        xs, ys, names, mask_names, of = [], [], [], [], []
        for group in folders:
            if not (Path(masks) / group).is_dir():
                raise ValueError(f"{images} has a sub-folder {group} (a group) but {masks} has "
                                 f"not; give the masks the same sub-folders")
            gx, gy, gn, gm = read_pairs(Path(images) / group, Path(masks) / group, axes)
            xs += gx
            ys += gy
            names += [f"{group}/{n}" for n in gn]
            mask_names += gm
            of += [group] * len(gn)
        return xs, ys, names, mask_names, of
    xs, ys, names, mask_names = read_pairs(images, masks, axes)
    if groups is None:
        return xs, ys, names, mask_names, None
    table = read_groups(groups) if isinstance(groups, (str, os.PathLike)) else dict(groups)
    return xs, ys, names, mask_names, groups_of(names, table, str(groups), str(images))


def evaluate_files(
    model: str | os.PathLike | keras.Model,
    images: str | os.PathLike,
    masks: str | os.PathLike,
    mask_type: str = "auto",
    tile_size: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    progress: Callable[[Iterable], Iterable] | None = None,
    instances: InstanceOptions | dict | None = None,
    axes: str | None = None,
    groups: str | os.PathLike | dict | None = None,
) -> dict:
    """Score a model on labelled images, overall and per group of images, read as ``fit`` reads
    them (the one reader, ``axes`` for TIFF images, and fit's mask rules: a mask whose values
    are no labels is refused, naming its file).

    Args:
        groups: a CSV of ``file name,group`` rows (:func:`read_groups`) or a ``{file name:
            group}`` mapping. Without it, an ``images`` folder that holds sub-folders and no
            image of its own is read sub-folder by sub-folder (``masks`` the same), each a group
            (:func:`group_folders`).

    Returns:
        ``{"images": [{"image": name, metric: value, ...}, ...], "mean": {...},
        "instances": {"ap50", ..., "ap95", "map", "f1", "n_pred", "n_true", "merges",
        "splits", "aji"}}``: pixel metrics averaged over images; instance metrics from the counts
        summed over all images, the AJI averaged over them (two-class models only). With groups,
        also ``"groups": {group: {"images": count, "ap50", "ap75", "map", "aji", "f1", "n_pred",
        "n_true", "merges", "splits"}}`` and each image's ``"group"``.
    """
    validate_batch_tile(batch_size, tile_size)
    axes = check_axes(axes)
    if not isinstance(model, keras.Model) and not resolve_model(model).exists():
        raise FileNotFoundError(f"model {model} does not exist (nor is it a packaged model: "
                                f"{', '.join(packaged_models()) or 'none installed'})")
    xs, ys, names, mask_names, of = _load_grouped(images, masks, groups, axes)
    predictor = Predictor(model, tile_size, batch_size, tta)
    two_classes = predictor.n_classes == 2
    settings = InstanceOptions.of(instances).resolve(predictor.instance_settings)
    rows, counts = [], []
    items = list(zip(xs, ys, names, mask_names))
    for x, y, name, mask_name in (progress(items) if progress else items):
        truth, objects = labels_from_mask(y, predictor.n_classes, mask_type, mask_name)
        if truth.shape != x.shape[:2]:
            raise ValueError(f"{name}: image is {x.shape[1]}x{x.shape[0]} but its mask is "
                             f"{truth.shape[1]}x{truth.shape[0]} (width x height; {mask_name}); "
                             "they must match")  # as fit says it
        probs = predictor(x, name)
        row = {"image": name, **segmentation_metrics(probs.argmax(-1), truth)}
        if two_classes:
            found = label_instances(probs, **settings)
            counts.append(instance_counts(found, objects))
            scores = instance_scores(counts[-1:])
            row.update(ap50=scores["ap50"], map=scores["map"], aji=scores["aji"], f1=scores["f1"],
                       n_pred=scores["n_pred"], n_true=scores["n_true"],
                       merges=scores["merges"], splits=scores["splits"],
                       rand_error_instances=rand_error_instances(found, objects))
        rows.append(row)
    pixel_keys = ("pixel_error", "iou", "dice", "rand_error")
    result = {"model_notes": predictor.notes, "images": rows, "mean": summarize([{k: r[k] for k in pixel_keys} for r in rows])}
    if two_classes:
        result["mean"]["rand_error_instances"] = summarize(
            [{"r": r["rand_error_instances"]} for r in rows])["r"]
        result["instances"] = instance_scores(counts, TAUS)
    if of is not None:
        for row, group in zip(rows, of):
            row["group"] = group
        result["groups"] = {}
        for group in sorted(set(of)):
            picked = [i for i, g in enumerate(of) if g == group]
            entry: dict = {"images": len(picked)}
            if two_classes:
                scores = instance_scores([counts[i] for i in picked], TAUS)
                entry.update({k: scores[k] for k in GROUP_KEYS})
            result["groups"][group] = entry
    return result


def format_table(result: dict) -> str:
    """:func:`evaluate_files`' result as a table: a row per image, the mean, the instance scores."""
    inst = "instances" in result
    head = f"{'image':24s} {'pixel err':>9s} {'IoU':>7s} {'Dice':>7s} {'Rand err':>9s}"
    lines = list(result.get("model_notes", []))
    lines += [head + (f" {'AP50':>6s} {'objects':>8s} {'truth':>6s} {'merges':>6s}" if inst else "")]
    for r in result["images"] + [{"image": "mean", **result["mean"]}]:
        line = (f"{r['image'][:24]:24s} {r['pixel_error']:9.4f} {r['iou']:7.4f} "
                f"{r['dice']:7.4f} {r['rand_error']:9.4f}")
        if inst and "ap50" in r:
            line += f" {r['ap50']:6.3f} {r['n_pred']:8d} {r['n_true']:6d} {r['merges']:6d}"
        lines.append(line)
    if inst:
        s = result["instances"]
        lines.append(f"instances, all images: AP50 {s['ap50']:.3f}, AP75 {s['ap75']:.3f}, "
                     f"mAP {s['map']:.3f}, AJI {s['aji']:.3f}, F1 {s['f1']:.3f}; {s['n_pred']} "
                     f"objects found, {s['n_true']} true; {s['merges']} merges, {s['splits']} "
                     "splits")
    for group, g in result.get("groups", {}).items():
        if "ap50" in g:
            lines.append(f"group {group} ({g['images']} images): AP50 {g['ap50']:.3f}, mAP "
                         f"{g['map']:.3f}, AJI {g['aji']:.3f}; {g['n_pred']} objects found, "
                         f"{g['n_true']} true; {g['merges']} merges")
        else:
            lines.append(f"group {group}: {g['images']} images")
    return "\n".join(lines)


THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
#: neck depths (px) tried by :func:`calibrate_instances`; 0 = no split
SPLIT_DEPTHS = (0.0, 1.0, 1.5, 2.0, 3.0)
#: smallest object sizes tried, as multiples of the model's (set from the training objects)
MIN_SIZE_FACTORS = (1, 2, 3, 5)
#: (threshold, neck depth) pairs of the first calibration stage whose sizes are all tried
SIZE_CANDIDATES = 3


def calibrate_instances(unet: keras.Model, images: list, instances: list, border_width: int,
                        min_size: int = 0, metric: str = "ap50", tta: bool = False) -> dict:
    """The decision threshold, neck depth and smallest object size that suit labelled
    (validation) images best.

    Args:
        unet: a two-class U-Net.
        images: normalised ``(H, W, C)`` images; instances: their true object ids.
        border_width: the model's separating border width; min_size: its smallest object (px).
        metric: ``"ap50"`` or ``"rand"`` (see :func:`choose_instance_settings`).
        tta: calibrate on test-time-augmented probabilities (the 8 flips and rotations), for a
            model that will be used with ``--tta``.

    Returns:
        :func:`choose_instance_settings` on the network's probabilities.
    """
    from .tiling import predict_tiled

    probs = [predict_tiled(unet, image, tta=tta) for image in images]
    return choose_instance_settings(probs, instances, border_width, min_size, metric)


def choose_instance_settings(probs: list, instances: list, border_width: int,
                             min_size: int = 0, metric: str = "ap50") -> dict:
    """The threshold, neck depth and smallest object size that score best on labelled images.

    Searches ``THRESHOLDS`` x ``SPLIT_DEPTHS`` x ``min_size`` times ``MIN_SIZE_FACTORS`` in two
    stages: every threshold and neck depth at the smallest size, then every size for the
    ``SIZE_CANDIDATES`` best (threshold, depth) pairs of the first stage. The size only removes
    fragments, so it hardly interacts with the other two; the staged search labels 34 of the
    100 combinations (the neck cut is what costs: 1.5-2 s per megapixel and combination here).

    Args:
        probs: ``(H, W, 2)`` class probabilities per image; instances: ``(H, W)`` true ids.
        min_size: the model's smallest object size (px), the unit of the sizes tried.
        metric: ``"ap50"``: the best AP at IoU 0.5, ties to the better mAP (objects such as
            nuclei). ``"rand"``: the lowest ISBI Rand error (mean over the images), taken as the
            worst of the threshold and its neighbours 0.1 below and above; ties to the better
            AP50. That is for tissue cut into cells by membranes, as in EM: a threshold just
            above one that merges two large cells is a risk few validation images cannot show,
            and one such merge costs the Rand error more than any missed small object. Remaining
            ties go to the first in the order no split before a split, the lower threshold, the
            smaller size.

    Returns:
        ``{"threshold", "split_depth", "min_size", "ap50", "map", "aji", "rand_error"}``: the scores
        at the chosen settings; the Rand error is ``None`` unless ``metric`` is ``"rand"``.

    Raises:
        ValueError: an unknown ``metric``.
    """
    if metric not in CALIBRATION_METRICS:
        raise ValueError(f"metric must be one of {', '.join(CALIBRATION_METRICS)}, "
                         f"got {metric!r}")
    sizes = sorted({max(int(min_size), 1) * f for f in MIN_SIZE_FACTORS}) if min_size else [0]
    rand = metric == "rand"
    step = 0.1
    scores: dict = {}

    def score(split_depth: float, threshold: float, size: int) -> tuple:
        if (split_depth, threshold, size) not in scores:
            labels = [label_instances(p, threshold, size, border_width, split_depth)
                      for p in probs]
            found = instance_scores([instance_counts(lab, t)
                                     for lab, t in zip(labels, instances)])
            error = (sum(rand_error_instances(lab, t) for lab, t in zip(labels, instances))
                     / len(labels)) if rand else None
            scores[split_depth, threshold, size] = (found["ap50"], found["map"], error,
                                                    found["aji"])
        return scores[split_depth, threshold, size]

    def key(split_depth: float, threshold: float, size: int) -> tuple:
        ap50, map_, _, _ = score(split_depth, threshold, size)
        if not rand:
            return ap50, map_
        worst = max(score(split_depth, round(threshold + d, 2), size)[2]
                    for d in (-step, 0.0, step))
        return -worst, ap50

    order = [(d, t) for d in SPLIT_DEPTHS for t in THRESHOLDS]
    # stage 1 at the smallest size; sorted() is stable, so ties keep the order of ``order``
    ranked = sorted(order, key=lambda pair: key(*pair, sizes[0]), reverse=True)
    candidates = set(ranked[:SIZE_CANDIDATES])
    best = None
    for split_depth, threshold in order:
        for size in sizes if (split_depth, threshold) in candidates else sizes[:1]:
            k = key(split_depth, threshold, size)
            if best is None or k > best[0]:
                ap50, map_, error, aji = score(split_depth, threshold, size)
                best = (k, {"threshold": threshold, "split_depth": split_depth,
                            "min_size": size, "ap50": ap50, "map": map_,
                            "aji": aji, "rand_error": error})
    return best[1]
