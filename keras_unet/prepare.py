"""From images and masks to a :class:`~keras_unet.data.TrainingSet`: read, check, normalise,
separate touching objects and compute the weight maps, once, before training.

:func:`load_training_data` reads (or makes) what a :class:`~keras_unet.config.TrainConfig` names;
:func:`prepare_training_set` works on arrays already in memory.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .console import no_bar
from .config import AUTO_VAL_FRACTION, AUTO_VAL_MIN_IMAGES, TrainConfig
from .data import TrainingSet, demo_data, split_validation
from .images import load_pairs
from .preprocess import Normalizer, dtype_scale
from .targets import labels_from_mask, mask_kind
from .weights import unet_weight_map

__all__ = ["prepare_training_set", "load_training_data", "validation_rule", "MIN_IMAGE_SIZE"]

Log = Callable[[str], None]
MIN_IMAGE_SIZE = 16  # px a side: smaller images hold almost no context to learn from


def prepare_training_set(
    images: list[np.ndarray], masks: list[np.ndarray], config: TrainConfig,
    names: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    keep_instances: bool = False,
) -> TrainingSet:
    """Normalise images and turn masks into class labels and weight maps (computed once, here).

    Touching instances are separated by ``config.border_width`` px (the paper's separating
    borders) before the labels and the weight map are made.

    Args:
        images: ``(H, W)`` or ``(H, W, C)`` arrays in their own dtype.
        masks: ``(H, W)`` masks (see :func:`keras_unet.targets.labels_from_mask`).
        config: supplies normalisation, classes, mask type and weight-map settings; its
            ``input_scale`` is set to the images' dtype maximum (255 for 8-bit, ...).
        names: one name per image for error messages (file names, say).
        progress: called with 1 after each image (a progress bar's ``update``).
        keep_instances: also keep each mask's objects, unseparated, as ``TrainingSet.instances``
            (validation sets: instance metrics).

    Raises:
        ValueError: naming the image, for unreadable pixels, sizes or masks, or when no mask
            holds any object.
    """
    names = names or [f"image {i}" for i in range(len(images))]
    scales = {dtype_scale(x) for x in images}
    if len(scales) > 1:
        raise ValueError(
            f"the images mix bit depths ({sorted(scales)} as maximum values); convert them to one"
        )
    config.input_scale = scales.pop() if scales else config.input_scale
    channels = {int(np.shape(x)[2]) if np.ndim(x) == 3 else 1 for x in images}
    if len(channels) > 1:
        raise ValueError(f"the images mix channel counts ({sorted(channels)}); convert them to one")
    normalizer = Normalizer(config.normalization, config.input_scale, channels.pop() if channels else 1)
    if len(images) != len(masks):
        raise ValueError(f"got {len(images)} images but {len(masks)} masks")
    xs, ys, ws, objects, areas, kinds, stats = [], [], [], [], [], set(), []
    for image, mask, name in zip(images, masks, names):
        if np.asarray(image).dtype.kind == "f" and not np.all(np.isfinite(image)):
            raise ValueError(
                f"{name}: the image holds NaN or infinite values; replace them (e.g. with "
                "numpy.nan_to_num) before training"
            )
        raw = normalizer.channels_of(image, name)
        stats.append(tuple(float(v) for v in normalizer.stats(raw)))
        x = normalizer.apply(raw, stats[-1])
        if x.shape[:2] != np.shape(mask)[:2]:
            raise ValueError(
                f"{name}: image is {x.shape[1]}x{x.shape[0]} but its mask is "
                f"{np.shape(mask)[1]}x{np.shape(mask)[0]} (width x height); they must match"
            )
        kinds.add(mask_kind(mask, config.n_classes, config.mask_type))
        y, separated = labels_from_mask(mask, config.n_classes, config.mask_type, name,
                                        config.border_width)
        xs.append(x)
        ys.append(y)
        ws.append(unet_weight_map(separated, config.w0, config.sigma, config.class_weights,
                                  classes=y))
        counts = np.bincount(separated.ravel())[1:]
        areas.append(counts[counts > 0])
        if keep_instances:
            objects.append(labels_from_mask(mask, config.n_classes, config.mask_type, name)[1]
                           if config.border_width else separated)
        if progress is not None:
            progress(1)
    if ys and all(not y.any() for y in ys):
        raise ValueError(f"every mask is empty (no object pixel in {len(ys)} masks), so there is "
                         "nothing to learn; check --masks (0 is background)")
    areas = np.concatenate(areas) if areas else np.zeros(0)
    smallest = int(0.5 * np.percentile(areas, 1)) if areas.size else 0
    # only instance masks are separated: binary and class masks' objects never touch
    border = config.border_width if "instance" in kinds else 0
    return TrainingSet(xs, ys, ws, objects if keep_instances else None, smallest, border,
                       stats, config.input_scale, config.normalization)


def load_training_data(config: TrainConfig, log: Log | None = None, progressbar=None
                       ) -> tuple[TrainingSet, TrainingSet | None]:
    """Read (or make) the training and validation sets of ``config`` and their weight maps.

    Without ``config.images`` the built-in demo data are used (8 images, 2 more for validation).
    Sets ``config.input_scale`` to the training images' dtype maximum.

    Args:
        log: where to report what was read (``print``-like).
        progressbar: ``click.progressbar``-like factory ``(length=, label=)`` for the weight maps.
    """
    say = log or (lambda _msg: None)
    val = None
    if config.images is None:
        n_val = 2 if not config.val_images else 0
        say("No --images/--masks given: training on the built-in demo data (8 images"
            + (f", {n_val} more for validation)." if n_val else ")."))
        xs, ys = (list(a) for a in demo_data(8 + n_val, 256, seed=config.seed))
        names = [f"demo {i}" for i in range(len(xs))]
        if n_val:
            val = (xs[8:], ys[8:], names[8:])
            xs, ys, names = xs[:8], ys[:8], names[:8]
    else:
        xs, ys, names = load_pairs(config.images, config.masks)
        say(f"Read {len(xs)} image/mask pairs from {config.images} and {config.masks}.")
    if config.val_images:
        val = load_pairs(config.val_images, config.val_masks)
        say(f"Read {len(val[0])} validation pairs from {config.val_images}.")
    elif config.images is not None:
        fraction, why = validation_rule(len(xs), config.val_fraction)
        if fraction:
            keep, held = split_validation(len(xs), fraction, config.seed)
            val = ([xs[i] for i in held], [ys[i] for i in held], [names[i] for i in held])
            xs, ys, names = [xs[i] for i in keep], [ys[i] for i in keep], [names[i] for i in keep]
            say(f"Holding out {len(held)} of {len(keep) + len(held)} images for validation and "
                f"calibration ({why}): {', '.join(val[2])}.")
        elif why:
            say(why)
    for x, name in zip(xs + (list(val[0]) if val else []), names + (list(val[2]) if val else [])):
        if min(x.shape[:2]) < MIN_IMAGE_SIZE:
            raise ValueError(f"{name} is {x.shape[1]}x{x.shape[0]} px; training images must be at "
                             f"least {MIN_IMAGE_SIZE} px a side (remove it or use larger crops)")
    small = [n for x, n in zip(xs, names) if min(x.shape[:2]) < config.geometry.margin]
    if small:
        say(f"Warning: {len(small)} image(s) are smaller than the network's "
            f"{config.geometry.margin} px margin (e.g. {small[0]}): most of their context is "
            "mirrored. A smaller --depth suits small images better.")
    if val and {dtype_scale(x) for x in val[0]} != {dtype_scale(x) for x in xs}:
        raise ValueError("the validation images have another bit depth than the training images; "
                         "convert them to one")
    kinds = {mask_kind(y, config.n_classes, config.mask_type) for y in ys}
    if "binary" in kinds and any(int(y.max()) == 255 for y in ys):
        say("Binary masks: 0 is background, 255 is class 1.")
    n = len(xs) + (len(val[0]) if val else 0)
    with (progressbar or no_bar)(length=n, label="Computing weight maps") as bar:
        val_set = (prepare_training_set(*val[:2], config, val[2], progress=bar.update,
                                        keep_instances=True) if val else None)
        # with no validation images the object settings are calibrated on the training images
        calibrate_on_training = val is None and config.calibrate == "auto"
        train_set = prepare_training_set(xs, ys, config, names, progress=bar.update,
                                         keep_instances=calibrate_on_training)
    return train_set, val_set


def validation_rule(n_images: int, fraction: float | None) -> tuple[float, str]:
    """The fraction of ``n_images`` to hold out for validation, and why, in words.

    ``fraction`` None is the default rule: ``AUTO_VAL_FRACTION`` (at least one image) when there
    are at least ``AUTO_VAL_MIN_IMAGES`` images, else none (the object settings are then
    calibrated on the training images).
    """
    if fraction is not None:
        return fraction, "--val-fraction" if fraction else ""
    if n_images >= AUTO_VAL_MIN_IMAGES:
        return AUTO_VAL_FRACTION, (f"the default: {AUTO_VAL_FRACTION:.0%}, at least 1, from "
                                   f"{AUTO_VAL_MIN_IMAGES} images on; --val-fraction 0 for none")
    return 0.0, (f"Only {n_images} image(s), so none is held out for validation (that needs at "
                 f"least {AUTO_VAL_MIN_IMAGES}, or --val-images/--val-fraction): the object "
                 "settings will be calibrated on the training images, which flatters them.")

