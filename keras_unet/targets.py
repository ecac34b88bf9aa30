"""Masks to training targets: class labels per pixel and the objects behind them.

* **class masks** hold class ids ``0..K-1`` (0 = background);
* **binary masks** hold 0 and one other value (1 or 255); objects are 4-connected components;
* **instance masks** hold object ids ``0..N`` (0 = background), which become class 1 ("object")
  and feed the weight map's border term.

**Separating borders.** The paper's HeLa labels mark "separating borders between touching cells"
as background. :func:`separate_touching` does that to instance labels: every object pixel that
has a pixel of *another* object within ``border_width`` px (a square of side
``2 * border_width + 1``) becomes background, so two touching objects end up ``2 * border_width``
px apart and each keeps its own id. The weight map is computed on the separated objects, so its
border term ``w0 exp(-(d1 + d2)^2 / 2 sigma^2)`` is highest exactly in those gaps.
:func:`keras_unet.instances.grow_into_gaps` gives the pixels back after prediction.
"""

from __future__ import annotations

import numpy as np

from scipy import ndimage as ndi
from skimage.measure import label as label_regions

from .config import MASK_TYPES
from .weights import instances_from_mask, looks_binary, to_instances, unet_weight_map

__all__ = ["MASK_TYPES", "mask_kind", "labels_from_mask", "targets_from_mask",
           "separate_touching", "check_instance_mask"]


def separate_touching(instances: np.ndarray, border_width: int = 1) -> np.ndarray:
    """Instance labels with the pixels where different objects meet set to background.

    Args:
        instances: int ``(H, W)`` object ids, 0 = background.
        border_width: px each of two touching objects gives up along their contact (0: none).

    Returns:
        int32 ``(H, W)``: the same ids, with ``2 * border_width`` px gaps between touching objects.
    """
    labels = np.asarray(instances).astype(np.int32, copy=False)
    if not isinstance(border_width, (int, np.integer)) or border_width < 0:
        raise ValueError(f"border width must be an integer >= 0 px, got {border_width!r}")
    if border_width == 0 or labels.max() == 0:
        return labels.copy()
    size = 2 * int(border_width) + 1
    # Another object nearby: a larger id (maximum filter) or a smaller non-zero id (minimum
    # filter, with background counted as the largest possible id).
    highest = ndi.maximum_filter(labels, size=size, mode="nearest")
    lowest = ndi.minimum_filter(np.where(labels > 0, labels, labels.max() + 1), size=size,
                                mode="nearest")
    touching = (labels > 0) & ((highest > labels) | (lowest < labels))
    return np.where(touching, 0, labels)


def check_instance_mask(mask: np.ndarray, source: str = "mask", option: str = "--masks") -> None:
    """Refuse an "instance mask" that is a picture: one whose ids do not form regions.

    In an instance mask each id covers one region (or a few, where an object is cut); a
    photograph's grey values scatter into many small regions. Raises a ValueError naming
    ``source`` and the reason, and ``option``, the command-line option that gave the mask.
    """
    mask = np.asarray(mask)
    if mask.dtype.kind == "f" and np.any(mask != np.round(mask)):
        raise ValueError(f"{source}: an instance mask holds whole-number ids, this one has "
                         f"fractions; is it an image? (check {option})")
    ids = np.unique(mask[mask > 0])
    if ids.size < 8:
        return
    regions = int(label_regions(mask.astype(np.int64), background=0, connectivity=1).max())
    if regions > 3 * ids.size:
        raise ValueError(
            f"{source} looks like an image, not a mask: its {ids.size} values form {regions} "
            "separate regions, where an instance mask has about one region per object id "
            f"(check {option}; binary masks hold 0 and 1 or 255)"
        )



def mask_kind(mask: np.ndarray, n_classes: int = 2, mask_type: str = "auto") -> str:
    """Resolve ``mask_type`` "auto" to "binary", "class" or "instance".

    bool masks and masks whose values are within {0, 1} or {0, 255} are binary; with more than two
    classes, masks whose values are class ids ``< n_classes`` are class masks; anything else is a
    mask of instance ids.
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask type must be one of {MASK_TYPES}, got {mask_type!r}")
    if mask_type != "auto":
        return mask_type
    if looks_binary(mask):
        return "binary"
    if n_classes > 2 and np.max(mask) < n_classes:
        return "class"
    return "instance"


def labels_from_mask(
    mask: np.ndarray, n_classes: int = 2, mask_type: str = "auto", source: str = "mask",
    border_width: int = 0, option: str = "--masks",
) -> tuple[np.ndarray, np.ndarray]:
    """Class labels and instance ids for one mask.

    * ``binary``: 0 = background, any other value (1 or 255) = class 1; objects are its
      4-connected components;
    * ``instance``: ids 0..N (any order, gaps allowed); class 1 = any object; the ids are the
      objects; with ``border_width`` > 0 touching objects are separated
      (:func:`separate_touching`) before the classes are taken;
    * ``class``: class ids 0..n_classes-1; objects are the connected components of each class.

    Returns:
        int32 class labels ``(H, W)`` and int32 instance ids ``(H, W)``.

    Raises:
        ValueError: naming ``source`` (the mask's file) and ``option`` (the option that gave
        it) for a mask that is not 2-D, or whose values do not fit.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{source}: expected a 2-D mask, got shape {mask.shape}")
    kind = mask_kind(mask, n_classes, mask_type)
    if kind == "binary":
        values = np.unique(mask)
        if values.size > 2 or (values.size == 2 and values[0] != 0):
            raise ValueError(
                f"{source}: a binary mask must hold 0 and one other value, found "
                f"{values.tolist()[:20]} (check {option})"
            )
        return (mask != 0).astype(np.int32), instances_from_mask(mask)
    if kind == "instance":
        if n_classes != 2:
            raise ValueError(
                f"{source}: instance masks give 2 classes (background, object), but "
                f"{n_classes} classes were asked for; use class masks or --classes 2"
            )
        check_instance_mask(mask, source, option)
        instances = separate_touching(to_instances(mask, "instance"), border_width)
        return (instances > 0).astype(np.int32), instances
    values = np.unique(mask)
    if values.min() < 0 or values.max() >= n_classes or mask.dtype.kind == "f" and np.any(
        values != np.round(values)
    ):
        raise ValueError(
            f"{source}: a class mask for {n_classes} classes may hold 0..{n_classes - 1}, "
            f"found values {values.tolist()[:20]}"
        )
    classes = mask.astype(np.int32)
    instances = np.zeros(mask.shape, np.int32)
    for c in values[values > 0]:
        comp = instances_from_mask(classes == c)
        instances = np.where(comp > 0, comp + instances.max(), instances)
    return classes, instances


def targets_from_mask(
    mask: np.ndarray,
    n_classes: int = 2,
    mask_type: str = "auto",
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: str | dict | None = "balanced",
    source: str = "mask",
    border_width: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Class labels and the paper's weight map for one mask (see :func:`labels_from_mask`).

    ``w0 = 0`` turns the border term off; ``class_weights=None`` turns class balancing off;
    ``border_width`` separates touching instances, and the weight map is computed on the
    separated objects.

    Returns:
        int32 class labels ``(H, W)`` and float32 weights ``(H, W)``.
    """
    classes, instances = labels_from_mask(mask, n_classes, mask_type, source, border_width)
    return classes, unet_weight_map(instances, w0, sigma, class_weights, classes=classes)
