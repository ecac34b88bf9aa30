"""From images and masks to a :class:`~keras_unet.data.TrainingSet`: read, check, normalise,
separate touching objects and compute the weight maps, once, before training.

:func:`load_training_data` reads (or makes) what a :class:`~keras_unet.config.TrainConfig` names;
:func:`prepare_training_set` works on arrays already in memory.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .cache import (CacheWriter, cache_key, cache_lock, check_cache_dir, check_data_memory,
                    default_cache_dir, default_data_memory, gb, open_cache, remove_stale)
from .console import no_bar
from .config import TrainConfig
from .augment import check_channels
from .data import TrainingSet, demo_data, split_validation, validation_rule
from .balance import draw_probabilities, image_groups
from .images import read_pairs
from .preprocess import Normalizer, dtype_scale
from .targets import labels_from_mask, mask_kind
from .weights import _threads, ordered_map, unet_weight_map

__all__ = ["prepare_training_set", "load_training_data", "prepare_items", "prepare_one",
           "Prepared", "held", "held_bytes", "MIN_IMAGE_SIZE"]

Log = Callable[[str], None]
MIN_IMAGE_SIZE = 16  # px a side: smaller images hold almost no context to learn from


@dataclass
class Prepared:
    """One image made ready to train on (see :func:`prepare_items`)."""

    image: np.ndarray  # (H, W, C) as held: its own dtype when 8/16 bit, else float32
    stats: tuple[float, float]  # (offset, divisor) of the normaliser
    labels: np.ndarray  # uint8 (H, W) class ids
    weights: np.ndarray  # float32 (H, W)
    areas: np.ndarray  # object areas, px
    kind: str  # binary, instance or class
    instances: np.ndarray | None = None  # (H, W) object ids, unseparated (validation)


def held_dtype(dtype) -> np.dtype:
    """The dtype an image is held in: 8 and 16-bit (and bool) pixels as they are, anything
    wider as float32 (what normalising computes in)."""
    dtype = np.dtype(dtype)
    return dtype if dtype.itemsize <= 2 and dtype.kind in "uibf" else np.dtype(np.float32)


def held(image: np.ndarray) -> np.ndarray:
    """An image as the training set holds it (:func:`held_dtype`), without a copy if it is."""
    image = np.asarray(image)
    return np.ascontiguousarray(image.astype(held_dtype(image.dtype), copy=False))


def normalizer_for(images: Sequence[np.ndarray], config: TrainConfig,
                   names: Sequence[str] | None = None, record: bool = True,
                   channels: int | None = None) -> Normalizer:
    """The preprocessing contract of ``images``: one bit depth, one channel count (grey joins
    RGB as RGB), or a ValueError naming the files that differ. Sets ``config.input_scale`` (the
    dtype maximum) and, with ``record``, ``config.input_dtype/input_min/input_max`` (the range
    the model records, :meth:`~keras_unet.preprocess.Normalizer.check`). ``channels``: the
    channel count of a model to fine-tune (default the images' own)."""
    names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
    depths = [np.asarray(x).dtype.name for x in images]
    if len({dtype_scale(x) for x in images}) > 1:
        raise ValueError(_odd_one("bit depths (dtypes)", depths, names))
    config.input_scale = dtype_scale(images[0]) if len(images) else config.input_scale
    channels_wanted, channels = channels, [int(np.shape(x)[2]) if np.ndim(x) == 3 else 1
                                           for x in images]
    if len(set(channels) - ({1} if set(channels) == {1, 3} else set())) > 1:  # grey joins RGB
        raise ValueError(_odd_one("channel counts", channels, names))
    if record and len(images):  # recorded in the model: what its training images held
        config.input_dtype = depths[0]
        config.input_min = float(min(np.min(x) for x in images))
        config.input_max = float(max(np.max(x) for x in images))
    return Normalizer(config.normalization, config.input_scale,
                      channels_wanted or (max(channels) if channels else 1))


def _odd_one(what: str, values: list, names: list[str]) -> str:
    """The message for images that mix ``what``: the file(s) that differ from the rest."""
    common, count = Counter(values).most_common(1)[0]
    odd = [(n, v) for n, v in zip(names, values) if v != common]
    shown = ", ".join(f"{n} has {v}" for n, v in odd[:3]) + (" ..." if len(odd) > 3 else "")
    hint = " (8-bit values x 257 are exact)" if str(common) == "uint16" else ""
    return (f"the images mix {what}: {shown}, the other {count} have {common}; convert "
            f"{'it' if len(odd) == 1 else 'them'} to {common}{hint}")


def prepare_one(image: np.ndarray, mask: np.ndarray, name: str, config: TrainConfig,
                normalizer: Normalizer, keep_instances: bool = False,
                mask_name: str | None = None, masks_option: str = "--masks") -> Prepared:
    """Class labels and weight map of an image/mask pair that passed :func:`check_pair`;
    ``mask_name`` (default ``name``) and ``masks_option`` name the mask's file and option.

    Raises:
        ValueError: naming the image, for unreadable pixels, sizes or masks.
    """
    mask_name = mask_name or name
    x = held(normalizer.channels_of(image, name))
    offset, divisor = normalizer.stats(x)
    kind = mask_kind(mask, config.n_classes, config.mask_type)
    y, separated = labels_from_mask(mask, config.n_classes, config.mask_type, mask_name,
                                    config.border_width, masks_option)
    weights = unet_weight_map(separated, config.w0, config.sigma, config.class_weights,
                              classes=y)
    counts = np.bincount(separated.ravel())[1:]
    objects = None
    if keep_instances:
        objects = (labels_from_mask(mask, config.n_classes, config.mask_type, mask_name,
                                    option=masks_option)[1]
                   if config.border_width else separated)
    return Prepared(x, (float(offset), float(divisor)), y.astype(np.uint8), weights,
                    counts[counts > 0], kind, objects)


def check_pair(image: np.ndarray, mask: np.ndarray, name: str, mask_name: str,
               normalizer: Normalizer) -> np.ndarray:
    """The image's channels as the normaliser takes them, after every command's checks (channels,
    NaN, value range) and its mask's size: ValueError naming the file."""
    x = normalizer.channels_of(image, name)
    normalizer.check(x, name)
    mh, mw = np.shape(mask)[:2]
    if x.shape[:2] != (mh, mw):
        raise ValueError(f"{name}: image is {x.shape[1]}x{x.shape[0]} but its mask is {mw}x{mh} "
                         f"(width x height; {mask_name}); they must match")
    return x


@contextlib.contextmanager
def _init_hint(channels: int | None) -> Iterator[None]:
    """Add to a channel-count refusal how to fix it when the model is ``fit --init``'s."""
    try:
        yield
    except ValueError as exc:
        if channels is None or "channel" not in str(exc):
            raise
        raise ValueError(f"{exc} (--init gives the model's channel count; without --init, fit "
                         "trains a new model on the images as they are)") from None


def prepare_items(items: Iterable[tuple[np.ndarray, np.ndarray, str, str]], config: TrainConfig,
                  normalizer: Normalizer, keep_instances: bool = False,
                  progress: Callable[[int], None] | None = None,
                  workers: int | None = None, masks_option: str = "--masks") -> Iterator[Prepared]:
    """:func:`prepare_one` over ``(image, mask, name, mask_name)`` items, image by image, several
    at once (weight maps release the GIL), in order; ``progress(1)`` after each."""
    workers = _threads() if workers is None else workers

    def one(item):
        image, mask, name, mask_name = item
        return prepare_one(image, mask, name, config, normalizer, keep_instances, mask_name,
                           masks_option)

    for done in ordered_map(one, items, workers):
        if progress is not None:
            progress(1)
        yield done


class Summary:
    """What the whole set tells the model, gathered image by image: the smallest object worth
    keeping and the separating border width (see :class:`~keras_unet.data.TrainingSet`)."""

    def __init__(self, config: TrainConfig):
        self.config, self.areas, self.kinds, self.masks, self.empty = config, [], set(), 0, 0

    def add(self, item: Prepared) -> Prepared:
        self.areas.append(item.areas)
        self.kinds.add(item.kind)
        self.masks += 1
        self.empty += not item.labels.any()
        return item

    def check(self) -> None:
        if self.masks and self.empty == self.masks:
            raise ValueError(f"every mask is empty (no object pixel in {self.masks} masks), so "
                             "there is nothing to learn; check --masks (0 is background)")

    @property
    def min_object_size(self) -> int:
        areas = np.concatenate(self.areas) if self.areas else np.zeros(0)
        return int(0.5 * np.percentile(areas, 1)) if areas.size else 0

    @property
    def border_width(self) -> int:
        # only instance masks are separated: binary and class masks' objects never touch
        return self.config.border_width if "instance" in self.kinds else 0


def prepare_training_set(
    images: list[np.ndarray], masks: list[np.ndarray], config: TrainConfig,
    names: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    keep_instances: bool = False,
    mask_names: list[str] | None = None,
    masks_option: str = "--masks",
    channels: int | None = None,
) -> TrainingSet:
    """Normalise images and turn masks into class labels and weight maps (computed once, here).

    Touching instances are separated by ``config.border_width`` px (the paper's separating
    borders) before the labels and the weight map are made. Images are held in their own dtype
    (8/16 bit) with their normalisation statistics; training tiles are normalised as they are
    cut. Weight maps are computed image by image, on several threads.

    Args:
        images: ``(H, W)`` or ``(H, W, C)`` arrays in their own dtype.
        masks: ``(H, W)`` masks (see :func:`keras_unet.targets.labels_from_mask`).
        config: supplies normalisation, classes, mask type and weight-map settings; its
            ``input_scale`` is set to the images' dtype maximum (255 for 8-bit, ...).
        names: one name per image for error messages (file names, say).
        progress: called with 1 after each image (a progress bar's ``update``).
        keep_instances: also keep each mask's objects, unseparated, as ``TrainingSet.instances``
            (validation sets: instance metrics).
        mask_names: the masks' files, named in errors about a mask (default: ``names``);
            masks_option: the option that gave them (``--val-masks`` for validation masks).
        channels: the channel count of the model to fine-tune (``fit --init``); default the
            images' own. Grey images stored as RGB count as 1 channel.

    Raises:
        ValueError: naming the image, for unreadable pixels, sizes or masks, or when no mask
            holds any object.
    """
    names = names or [f"image {i}" for i in range(len(images))]
    mask_names = mask_names or names
    normalizer = normalizer_for(images, config, names, channels=channels)
    if len(images) != len(masks):
        raise ValueError(f"got {len(images)} images but {len(masks)} masks")
    with _init_hint(channels):
        for pair in zip(images, masks, names, mask_names):
            check_pair(*pair, normalizer)
        return collect(prepare_items(zip(images, masks, names, mask_names), config, normalizer,
                                     keep_instances, progress, masks_option=masks_option),
                       normalizer, config, keep_instances)


def collect(items: Iterable[Prepared], normalizer: Normalizer, config: TrainConfig,
            keep_instances: bool) -> TrainingSet:
    """A :class:`TrainingSet` in memory from prepared images (normalised by ``normalizer``)."""
    summary = Summary(config)
    xs, stats, ys, ws, objects = [], [], [], [], []
    for item in map(summary.add, items):
        xs.append(item.image)
        stats.append(item.stats)
        ys.append(item.labels)
        ws.append(item.weights)
        objects.append(item.instances)
    summary.check()
    return TrainingSet(xs, ys, ws, objects if keep_instances else None, summary.min_object_size,
                       summary.border_width, stats, normalizer.scale, normalizer.mode)


def _drain(xs: list, ys: list, names: list, mask_names: list) -> Iterator[tuple]:
    """The items of four lists, images and masks dropped from them once handed out (so a raw
    mask is freed as soon as its labels and weights exist)."""
    for i in range(len(xs)):
        item = (xs[i], ys[i], names[i], mask_names[i])
        xs[i] = ys[i] = None
        yield item


def held_bytes(images: Sequence[np.ndarray], normalizer: Normalizer,
               keep_instances: bool = False) -> int:
    """Bytes a prepared set of ``images`` takes: each image as held, uint8 labels, float32
    weights (and int32 object ids)."""
    return sum(int(np.prod(np.shape(x)[:2])) * (
        normalizer.channels * held_dtype(np.asarray(x).dtype).itemsize + 1 + 4
        + 4 * keep_instances) for x in images)


def load_training_data(config: TrainConfig, log: Log | None = None, progressbar=None,
                       data_memory: float | None = None,
                       cache_dir: str | os.PathLike | None = None,
                       channels: int | None = None,
                       ) -> tuple[TrainingSet, TrainingSet | None]:
    """Read (or make) the training and validation sets of ``config`` and their weight maps.

    Without ``config.images`` the built-in demo data are used (8 images, 2 more for validation).
    Sets ``config.input_scale`` to the training images' dtype maximum. Weight maps are computed
    image by image, on several threads; each raw mask is let go once its targets exist.

    When the prepared sets (images as held, labels, weights) would take more than
    ``data_memory`` GB, they are written once to the disk cache in ``cache_dir``
    (:mod:`keras_unet.cache`) and read from there as training needs them; a later run with the
    same data and settings reuses that cache.

    Args:
        log: where to report what was read (``print``-like).
        progressbar: ``click.progressbar``-like factory ``(length=, label=)`` for the weight maps.
        data_memory: GB the prepared data may take in memory (default
            :func:`keras_unet.cache.default_data_memory`, a quarter of the machine's memory).
        cache_dir: where disk caches live (default :func:`keras_unet.cache.default_cache_dir`).
        channels: see :func:`prepare_training_set`.

    Raises:
        ValueError, OSError: one line: unreadable data, ``data_memory`` not a positive number,
            a cache folder that cannot be written, a disk that filled up while writing.
    """
    check_data_memory(default_data_memory() if data_memory is None else data_memory)
    if cache_dir is not None:
        check_cache_dir(cache_dir)
    say = log or (lambda _msg: None)
    val = None
    if config.images is None:
        n_val = 2 if not config.val_images else 0
        say("No --images/--masks given: training on the built-in demo data (8 images"
            + (f", {n_val} more for validation)." if n_val else ")."))
        xs, ys = (list(a) for a in demo_data(8 + n_val, 256, seed=config.seed))
        names = [f"demo {i}" for i in range(len(xs))]
        mask_names = list(names)
        if n_val:
            val = (xs[8:], ys[8:], names[8:], names[8:])
            xs, ys, names, mask_names = xs[:8], ys[:8], names[:8], names[:8]
    else:
        xs, ys, names, mask_names = read_pairs(config.images, config.masks, config.axes)
        say(f"Read {len(xs)} image/mask pair{'s' * (len(xs) != 1)} from {config.images} and "
            f"{config.masks}.")
    groups = image_groups(config.balance, xs, names, config.images)
    if config.val_images:
        val = read_pairs(config.val_images, config.val_masks, config.axes,
                         ("--val-images", "--val-masks"))
        say(f"Read {len(val[0])} validation pairs from {config.val_images}.")
    elif config.images is not None:
        fraction, why = validation_rule(len(xs), config.val_fraction)
        if fraction:
            keep, held = split_validation(len(xs), fraction, config.seed)
            val = ([xs[i] for i in held], [ys[i] for i in held], [names[i] for i in held],
                   [mask_names[i] for i in held])
            xs, ys, names = [xs[i] for i in keep], [ys[i] for i in keep], [names[i] for i in keep]
            mask_names = [mask_names[i] for i in keep]
            groups = groups and [groups[i] for i in keep]
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
    draws, line = draw_probabilities(groups) if groups is not None else (None, "")
    if draws is not None or config.balance not in ("kind", "none"):  # one kind: drawn alike
        say(line)
    sets = {"train": (xs, ys, names, mask_names)}
    if val:
        sets["val"] = tuple(list(v) for v in val)
    del xs, ys, names, mask_names, val  # the lists in ``sets`` are emptied image by image
    options = {"train": "--masks", "val": "--val-masks" if config.val_images else "--masks"}
    # with no validation images the object settings are calibrated on the training images
    keep = {"train": "val" not in sets and config.calibrate == "auto", "val": True}
    normalizers = {k: normalizer_for(v[0], config, v[2], record=k == "train",
                                     channels=channels)
                   for k, v in sets.items()}
    check_channels(config.augmentation, normalizers["train"].channels)  # colour options
    with _init_hint(channels):  # every image's channels and values, before any weight map
        for k, v in sets.items():
            for pair in zip(*v):
                check_pair(*pair, normalizers[k])
    need = sum(held_bytes(v[0], normalizers[k], keep[k]) for k, v in sets.items())
    budget = check_data_memory(default_data_memory() if data_memory is None else data_memory)
    n = sum(len(v[0]) for v in sets.values())
    if need <= budget * 1e9:
        say(f"Data: {gb(need)} prepared, held in memory (--data-memory {budget:g} GB).")
        with (progressbar or no_bar)(length=n, label="Computing weight maps") as bar, \
                _init_hint(channels):
            out = {k: collect(prepare_items(_drain(*v), config, normalizers[k], keep[k],
                                            bar.update, masks_option=options[k]),
                              normalizers[k], config, keep[k])
                   for k, v in sets.items()}
        out["train"].draws = draws
        return out["train"], out.get("val")
    root = check_cache_dir(default_cache_dir() if cache_dir is None else cache_dir)
    key = cache_key({k: v[:2] for k, v in sets.items()}, {
        k: getattr(config, k) for k in ("mask_type", "n_classes", "normalization", "border_width",
                                        "w0", "sigma", "class_weights")})
    with cache_lock(root):
        cached = open_cache(root / key)
        if cached is None:
            say(f"Data: {gb(need)} prepared, more than --data-memory {budget:g} GB: writing "
                f"them once to the disk cache {root / key}.")
            remove_stale(root, key)
            with CacheWriter(root, key) as writer, (progressbar or no_bar)(
                    length=n, label="Computing weight maps into the cache") as bar, \
                    _init_hint(channels):
                for k, v in sets.items():
                    summary = Summary(config)
                    for item in prepare_items(_drain(*v), config, normalizers[k], keep[k],
                                              bar.update, masks_option=options[k]):
                        writer.add(k, summary.add(item))
                    summary.check()
                    writer.finish_set(k, summary.min_object_size, summary.border_width, keep[k])
                writer.commit()
            cached = open_cache(root / key)
        else:
            say(f"Data: {gb(need)} prepared, more than --data-memory {budget:g} GB: reading "
                f"them from the disk cache {root / key} (made earlier from the same images, "
                "masks and settings).")
    for k, data in cached.items():  # how the cached images are normalised
        data.scale, data.normalization = normalizers[k].scale, normalizers[k].mode
    cached["train"].draws = draws
    return cached["train"], cached.get("val")
