"""Masks to training targets: class labels per pixel and the objects behind them.

* **class masks** hold class ids ``0..K-1`` (0 = background);
* **binary masks** hold 0 and one other value (1 or 255); objects are 4-connected components;
* **instance masks** hold object ids ``0..N`` (0 = background), which become class 1 ("object")
  and feed the weight map's border term.
"""

from __future__ import annotations

import numpy as np

from .weights import instances_from_mask, looks_binary, to_instances, unet_weight_map

__all__ = ["MASK_TYPES", "mask_kind", "labels_from_mask", "targets_from_mask"]

MASK_TYPES = ("auto", "instance", "binary", "class")


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
    mask: np.ndarray, n_classes: int = 2, mask_type: str = "auto", source: str = "mask"
) -> tuple[np.ndarray, np.ndarray]:
    """Class labels and instance ids for one mask.

    * ``binary``: 0 = background, any other value (1 or 255) = class 1; objects are its
      4-connected components;
    * ``instance``: ids 0..N; class 1 = any object; the ids are the objects;
    * ``class``: class ids 0..n_classes-1; objects are the connected components of each class.

    Returns:
        int32 class labels ``(H, W)`` and int32 instance ids ``(H, W)``.

    Raises:
        ValueError: naming ``source`` for a mask that is not 2-D, or whose values do not fit.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{source}: expected a 2-D mask, got shape {mask.shape}")
    kind = mask_kind(mask, n_classes, mask_type)
    if kind == "binary":
        values = np.unique(mask)
        if values.size > 2 or (values.size == 2 and values[0] != 0):
            raise ValueError(
                f"{source}: a binary mask must hold 0 and one other value, found {values.tolist()}"
            )
        return (mask != 0).astype(np.int32), instances_from_mask(mask)
    if kind == "instance":
        if n_classes != 2:
            raise ValueError(
                f"{source}: instance masks give 2 classes (background, object), but "
                f"{n_classes} classes were asked for; use class masks or --classes 2"
            )
        instances = to_instances(mask, "instance")
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
) -> tuple[np.ndarray, np.ndarray]:
    """Class labels and the paper's weight map for one mask (see :func:`labels_from_mask`).

    ``w0 = 0`` turns the border term off; ``class_weights=None`` turns class balancing off.

    Returns:
        int32 class labels ``(H, W)`` and float32 weights ``(H, W)``.
    """
    classes, instances = labels_from_mask(mask, n_classes, mask_type, source)
    return classes, unet_weight_map(instances, w0, sigma, class_weights, classes=classes)
